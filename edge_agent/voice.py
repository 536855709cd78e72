"""Call announcements in the hall (语音叫号): "请 A012 号 到 3 号窗口", in
Mandarin, a chime first, one at a time.

    Announcer(Store(path), cfg["voice"]).start()    # off unless [voice] enabled

One thread reads the calls the queue recorded (store.queues.calls_after),
renders each with the text-to-speech command (espeak-ng's Mandarin voice
`cmn` by default) and plays it to the end before the next: calls made at
the same moment are said one after the other, never over each other, in
the order they were made. A call older than _STALE_MS when its turn comes
(the speaker was busy for minutes) is skipped and counted: the board
shows it, and saying it late would send a citizen to a window that has
moved on. Rendering needs no audio device; playing does.
"""
import io
import logging
import math
import os
import shlex
import struct
import subprocess
import tempfile
import threading
import time
import wave

log = logging.getLogger("edge_agent.voice")

_POLL_S = 0.3
_STALE_MS = 120000
_DIGITS = "零一二三四五六七八九"


def words(call):
    """The sentence for a call: digits said one by one, as halls do (A012 ->
    A零一二), the window by its id."""
    ticket = "".join(_DIGITS[int(c)] if c.isdigit() else c for c in call["ticket"])
    window = call["window"]
    if window.isdigit():
        window = str(int(window))
    again = "再次" if call.get("recall") else ""
    return "请%s号%s到%s号窗口办理" % (ticket, again, window)


def render(text, cfg):
    """WAV bytes: the chime (when [voice] chime) then the text spoken."""
    out = subprocess.run(shlex.split(cfg["command"]) + [text], capture_output=True, timeout=30)
    if out.returncode != 0 or not out.stdout.startswith(b"RIFF"):
        raise OSError("%s: %s" % (cfg["command"], out.stderr.decode("utf-8", "replace").strip()[:200]
                                  or "no WAV on stdout"))
    speech = _frames(out.stdout)
    if not cfg["chime"]:
        return _wav(speech[0], speech[1], speech[2], speech[3])
    rate, width, channels, frames = speech
    return _wav(rate, width, channels, chime(rate, width, channels) + frames)


def _frames(data):
    # espeak-ng writes a streaming WAV (its sizes say 0x7ffff...): read the
    # header, take the rest as frames.
    with wave.open(io.BytesIO(data)) as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
    start = data.find(b"data") + 8
    return rate, width, channels, data[start:]


def _wav(rate, width, channels, frames):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def chime(rate, width=2, channels=1):
    """Two notes (E5, C5; 叮咚) fading out, then a short rest, as frames."""
    if width != 2:
        raise ValueError("chime: 16-bit samples only")
    out = bytearray()
    for freq, secs in ((659.25, 0.35), (523.25, 0.55)):
        n = int(rate * secs)
        for i in range(n):
            v = int(9000 * math.sin(2 * math.pi * freq * i / rate) * (1 - i / n))
            out += struct.pack("<h", v) * channels
    out += b"\0" * (int(rate * 0.25) * 2 * channels)
    return bytes(out)


def has_audio():
    return os.path.isdir("/dev/snd") and any(n.startswith("pcm") for n in os.listdir("/dev/snd"))


class Announcer(threading.Thread):
    def __init__(self, store, cfg, stop=None):
        super().__init__(name="voice", daemon=True)
        self.store, self.cfg = store, cfg
        self.stopping = stop or threading.Event()
        self.said = self.skipped = self.failed = 0

    def run(self):
        # Only calls made from now on: a restart does not say the morning again.
        last = self.store.queues.last_call_id()
        while not self.stopping.wait(_POLL_S):
            for call in self.store.queues.calls_after(last):
                last = call["id"]
                if time.time() * 1000 - call["at_ms"] > _STALE_MS:
                    self.skipped += 1
                    continue
                try:
                    self.say(call)
                    self.said += 1
                except (OSError, subprocess.SubprocessError) as e:
                    self.failed += 1
                    log.error("announcing %s: %s", call["ticket"], e)

    def say(self, call):
        data = render(words(call), self.cfg)
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            f.write(data)
            f.flush()
            for _ in range(self.cfg["repeat"]):
                subprocess.run(shlex.split(self.cfg["player"]) + [f.name], check=True, timeout=60,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
