"""A UART barcode/QR scanner (serial mode, CR suffix, as shipped): each
scan is the code's bytes then CR, at the scanner's baud. It can also send
what a dirty lens, a damaged label or a wrong setting gives: binary noise,
and lines longer than any code.

    sc = Scanner(port, baud=9600)
    sc.scan("KC2025000123"); sc.noise(200); sc.long_line(500)
"""
import random
import time


class Scanner:
    def __init__(self, port, baud=9600):
        self.port, self.baud = port, baud
        self.sent = 0

    def _send(self, data):
        # At the wire's pace (10 bits a byte), in small pieces as a UART would.
        step = max(1, self.baud // 10 // 100)     # 10 ms of wire
        for i in range(0, len(data), step):
            self.port.write(data[i:i + step])
            self.sent += len(data[i:i + step])
            time.sleep(len(data[i:i + step]) * 10.0 / self.baud)

    def scan(self, code):
        self._send(code.encode("utf-8") + b"\r")

    def noise(self, n, seed=None):
        """n random bytes (no CR: the kiosk cannot even tell where they end), then a CR."""
        rnd = random.Random(seed)
        self._send(bytes(rnd.choice([b for b in range(256) if b != 13]) for _ in range(n)) + b"\r")

    def long_line(self, n):
        self._send(b"9" * n + b"\r")
