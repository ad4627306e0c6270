"""The pieces of the Twilio caller simulator; import them from
``gateway.testing.twilio_caller``, whose docstring is the manual."""
