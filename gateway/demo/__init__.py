"""The offline demo: a whole phone call run locally, with no network, Twilio or OpenAI account."""
