"""The pieces of the local OpenAI Realtime server; import them from
``gateway.testing.realtime_server`` (or ``gateway.testing``), whose docstring is the manual."""
