"""The call: one Twilio Media Stream bridged to one ``agents.realtime`` session.

The decisions are sans-I/O: ``call.Call`` (fed Twilio frames, session events and the time;
returns ``actions``), ``playback.Playback`` (what the caller heard), ``timing`` (silence,
keypad, message rate); what happened is data: ``events``, ``record.CallRecord``, ``ending``.
The asyncio edges carry the actions out: ``runner.CallRunner`` (the call's tasks),
``media.TwilioSocket``, ``model.ModelLink``, and ``control.CallControl`` for the gateway's
tools. ``agents`` picks the agent; ``sdk`` keeps the SDK's one-off costs off the hot path.
"""
