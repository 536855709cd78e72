"""Boot entry: pick the board, run the evaluator.

On a board this file is main.py on flash (or frozen); on a PC,
`micropython -X heapsize=64k firmware/main.py` with QL_BOARD=sim and the
simulator's QL_FLASH / QL_CONTROL set (tools/vdevice.py does this).
"""
import os

import board
import evaluator

evaluator.main(board.load(os.getenv("QL_BOARD") if hasattr(os, "getenv") else None))
