"""The demo's speech clips: complete, correctly described, speech-like, and loadable anywhere."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from gateway.audio import FRAME_BYTES
from gateway.audio.measure import db, from_pcm16
from gateway.demo import clips
from gateway.demo.clips import Clip

ROOT = Path(__file__).resolve().parents[2]
RATE = 8000
MANIFEST = json.loads(
    resources.files("gateway.demo").joinpath("clips", "clips.json").read_text(encoding="utf-8")
)
NAMES = list(MANIFEST)
EXPECTED_NAMES = [
    "agent_greeting", "caller_order_late", "agent_explains", "caller_barge_in",
    "agent_ask_digits", "agent_order_status", "caller_thanks", "agent_goodbye", "agent_sorry",
]
#: A sample louder than this is not silence (the clips' own silence decodes to 0).
SILENCE_DBFS = -50.0


def samples(clip: Clip) -> np.ndarray:
    return from_pcm16(clip.pcm16())


def median_f0(x: np.ndarray, rate: int = RATE) -> float:
    """Median fundamental over loud, clearly periodic 40 ms frames (autocorrelation, 60-400 Hz)."""
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    lo, hi = rate // 400, rate // 60
    floor = 0.035 * 32768  # RMS: only the voiced, loud parts of the utterance
    f0s = []
    for start in range(0, x.size - frame, hop):
        w = x[start : start + frame] - x[start : start + frame].mean()
        if np.sqrt(np.mean(w**2)) < floor:
            continue
        ac = np.correlate(w, w, "full")[frame - 1 :]
        ac /= ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5:
            f0s.append(rate / lag)
    assert len(f0s) >= 20, "too few voiced frames to estimate a pitch"
    return float(np.median(f0s))


def test_manifest_lists_exactly_the_clip_files_in_conversation_order():
    assert NAMES == EXPECTED_NAMES
    assert clips.names() == NAMES
    packaged = {p.name for p in resources.files("gateway.demo").joinpath("clips").iterdir()}
    assert packaged == {"clips.json"} | {f"{name}.ulaw" for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_every_clip_loads_as_its_manifest_describes(name):
    clip = clips.load(name)
    entry = MANIFEST[name]
    assert clip.name == name
    assert clip.speaker == entry["speaker"] == name.split("_")[0]
    assert clip.text == entry["text"] and clip.text
    assert clip.ms == entry["ms"] == len(clip.ulaw) / 8
    assert len(clip.ulaw) % FRAME_BYTES == 0  # whole 20 ms Twilio frames
    assert 1500 <= clip.ms <= 20000
    assert clips.load(name) is clip  # cached


def test_all_clips_is_every_clip_in_order_and_small():
    everything = clips.all_clips()
    assert list(everything) == NAMES
    assert all(everything[name] is clips.load(name) for name in NAMES)
    assert sum(len(c.ulaw) for c in everything.values()) < 400 * 1024


def test_unknown_clip_raises_key_error_naming_the_known_ones():
    with pytest.raises(KeyError) as info:
        clips.load("agent_sings")
    message = str(info.value)
    assert "agent_sings" in message
    assert all(name in message for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_peak_is_about_minus_3_dbfs(name):
    peak = db(float(np.max(np.abs(samples(clips.load(name))))) / 32768)
    assert -3.5 <= peak <= -2.5


@pytest.mark.parametrize("name", NAMES)
def test_speech_starts_and_ends_near_the_clip_edges(name):
    x = samples(clips.load(name))
    loud = np.nonzero(np.abs(x) > 32768 * 10 ** (SILENCE_DBFS / 20))[0]
    lead_ms, trail_ms = loud[0] / 8, (x.size - 1 - loud[-1]) / 8
    # ~50 ms of silence each end (the tail plus up to 20 ms of padding to a whole frame):
    # enough not to clip the first consonant, little enough not to sound like a gap.
    assert 20 <= lead_ms <= 100
    assert 20 <= trail_ms <= 100


@pytest.mark.parametrize("name", NAMES)
def test_energy_is_in_the_telephone_band(name):
    x = samples(clips.load(name))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    total = power.sum()
    assert power[(freqs >= 300) & (freqs <= 3400)].sum() / total > 0.85
    # The 100-3600 Hz band-limit: next to nothing at DC/hum frequencies or near Nyquist.
    assert power[freqs < 80].sum() / total < 1e-3
    assert power[freqs > 3700].sum() / total < 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_pcm16_at_24k_is_exactly_three_times_as_long_and_time_aligned(name):
    clip = clips.load(name)
    x8 = clip.pcm16(8000)
    x24 = clip.pcm16(24000)
    assert clip.pcm16() == x8
    assert len(x8) == 2 * len(clip.ulaw)
    assert len(x24) == 3 * len(x8)
    # Every third 24 kHz sample lands on an 8 kHz sample: aligned, not delayed by the filter.
    a, b = from_pcm16(x8), from_pcm16(x24)[::3]
    snr = 10 * np.log10(np.sum(a**2) / np.sum((b - a) ** 2))
    assert snr > 35


@pytest.mark.parametrize("rate", [16000, 22050, 44100])
def test_pcm16_rejects_other_rates(rate):
    with pytest.raises(ValueError, match=str(rate)):
        clips.load("agent_sorry").pcm16(rate)


def test_agent_and_caller_have_clearly_different_voices():
    pitch = {name: median_f0(samples(clip)) for name, clip in clips.all_clips().items()}
    agent = [f0 for name, f0 in pitch.items() if MANIFEST[name]["speaker"] == "agent"]
    caller = [f0 for name, f0 in pitch.items() if MANIFEST[name]["speaker"] == "caller"]
    assert agent and caller
    # Measured: agent (en-us+f1) 174-182 Hz, caller (en+m3) 100-113 Hz.
    assert all(150 <= f0 <= 230 for f0 in agent), pitch
    assert all(80 <= f0 <= 135 for f0 in caller), pitch
    assert min(agent) > 1.3 * max(caller), pitch


def test_clips_are_declared_package_data():
    """A wheel only carries the clips if pyproject.toml says so."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["gateway.demo"]
    assert any(p in ("clips/*", "clips/*.ulaw") for p in patterns)
    assert any(p in ("clips/*", "clips/*.json") for p in patterns)


def _make_clips_module():
    spec = importlib.util.spec_from_file_location("make_clips", ROOT / "tools" / "make_clips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_matches_the_manifest_text():
    make_clips = _make_clips_module()
    assert {name: (e["speaker"], e["text"]) for name, e in MANIFEST.items()} == make_clips.CLIPS


def test_regenerating_reproduces_the_committed_clips(tmp_path):
    make_clips = _make_clips_module()
    for tool, version in make_clips.TOOL_VERSIONS.items():
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (only needed to regenerate the clips)")
        if make_clips.tool_version(tool) != version:
            pytest.skip(f"{tool} is not {version!r}: its output may legitimately differ")
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_clips.py"), "--out", str(tmp_path)],
        check=True, capture_output=True,
    )
    committed = resources.files("gateway.demo").joinpath("clips")
    for name in [*(f"{n}.ulaw" for n in NAMES), "clips.json"]:
        assert (tmp_path / name).read_bytes() == committed.joinpath(name).read_bytes(), name
