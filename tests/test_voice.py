"""Call announcements (edge_agent/voice.py) with the real espeak-ng Mandarin
voice, measured with sox: a call renders to a WAV that is not silent and
as long as a spoken call is, the chime first; two calls made at the same
moment are played one after the other, in call order, never overlapping."""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from edge_agent import config, queues, voice
from edge_agent.store import Store
from harness import wait_for

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="espeak-ng and sox are installed by make (tools/system-deps.sh)")


def stat(path, *effects):
    """sox's `stat` of a WAV (after effects such as trim): {name: value}."""
    out = subprocess.run(["sox", str(path), "-n"] + list(effects) + ["stat"], capture_output=True, text=True)
    return {k.strip(): float(v) for k, v in re.findall(r"^([A-Za-z ()]+):\s+(-?[\d.]+)$", out.stderr, re.M)}


def voice_cfg(**over):
    return dict(config.validate({"hall": "h1"})["voice"], **over)


def test_a_call_renders_to_a_chime_and_plausible_mandarin_speech(tmp_path):
    text = voice.words({"ticket": "A012", "window": "03"})
    assert text == "请A零一二号到3号窗口办理"
    wav = tmp_path / "call.wav"
    wav.write_bytes(voice.render(text, voice_cfg()))
    whole = stat(wav)
    # A dozen syllables at 150 words a minute, and the chime: some seconds, not a click, not minutes.
    assert 3.0 < whole["Length (seconds)"] < 15.0, whole
    assert whole["RMS     amplitude"] > 0.02, whole
    chime = stat(wav, "trim", "0", "0.8")
    speech = stat(wav, "trim", "1.2")
    assert chime["RMS     amplitude"] > 0.05 and speech["RMS     amplitude"] > 0.02, (chime, speech)
    plain = tmp_path / "plain.wav"
    plain.write_bytes(voice.render(text, voice_cfg(chime=False)))
    # The chime is 0.35 + 0.55 s of notes and 0.25 s of rest.
    assert abs(whole["Length (seconds)"] - stat(plain)["Length (seconds)"] - 1.15) < 0.01


PLAYER = r'''
import sys, time, wave
log, path = sys.argv[1], sys.argv[2]
with wave.open(path) as w:
    secs = w.getnframes() / w.getframerate()
start = time.time()
time.sleep(secs / 10)                # a card at ten times the speed: one after the other all the same
with open(log, "a") as f:
    f.write("%f %f %f\n" % (start, time.time(), secs))
'''


def test_calls_at_the_same_moment_are_said_one_after_the_other_in_order(tmp_path):
    store = Store(str(tmp_path / "agent.db"))
    cfg = config.validate({"hall": "h1"})
    now = int(time.time() * 1000)
    queues.add(store, "A", "综合受理", now)
    queues.serve(store, "W01", ["A"])
    queues.serve(store, "W02", ["A"])
    player = tmp_path / "player.py"
    player.write_text(PLAYER)
    log = tmp_path / "played.log"
    stop = threading.Event()
    a = voice.Announcer(Store(str(tmp_path / "agent.db")), voice_cfg(player="%s %s %s" % (sys.executable,
                                                                                       player, log)), stop)
    a.start()
    try:
        ops = queues.QueueOps(cfg)
        for _ in range(2):
            with store.atomic():
                ops.op_ticket(store, {"device": "ks-01"}, {"queue": "A"})
        with store.atomic():               # two windows call in the same second
            ops.op_next(store, {"device": "ev-01", "window": "W01"}, {})
        with store.atomic():
            ops.op_next(store, {"device": "ev-02", "window": "W02"}, {})
        wait_for(lambda: os.path.exists(log) and len(open(log).readlines()) == 2, 60, what="both calls said")
    finally:
        stop.set()
        a.join(10)
    played = [tuple(map(float, line.split())) for line in open(log)]
    (s1, e1, d1), (s2, e2, d2) = played
    assert e1 <= s2, "the second call started before the first ended"
    assert 3.0 < d1 < 15.0 and 3.0 < d2 < 15.0
    assert (a.said, a.failed, a.skipped) == (2, 0, 0)
