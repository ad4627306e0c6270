"""Call recordings (``GATEWAY_RECORD``): each call as a stereo 8 kHz WAV, the caller on the left,
the agent on the right as the caller heard it (docs/recordings.md).

- ``Recorder`` (``recorder``): the two channels on one clock, sans-I/O;
- ``WavSpool`` (``spool``): the file, written in pieces from threads;
- ``CallRecording`` (``call``): one call's recording on the event loop, what the runner feeds;
  ``recording_path`` names its file, ``stored_recording`` finds a stored call's safely;
- ``delete_expired`` / ``keep_recordings`` (``retention``): ``GATEWAY_RECORDING_RETENTION_DAYS``.
"""

from gateway.recording.call import CallRecording, recording_path, stored_recording
from gateway.recording.recorder import Chunk, Recorder
from gateway.recording.retention import delete_expired, keep_recordings
from gateway.recording.spool import WavSpool

__all__ = ["CallRecording", "Chunk", "Recorder", "WavSpool", "delete_expired", "keep_recordings", "recording_path",
           "stored_recording"]
