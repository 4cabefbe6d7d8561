"""`python tests/fake_server.py SCAN_DELAY TOKEN_FILE`: server.app.serve over a FakeEngine.

Used by the SIGTERM test, which needs a real process to signal.
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fake_engine import FakeEngine

from server.app import ServerConfig, serve

eng = FakeEngine(scan_delay=float(sys.argv[1]))
eng.register("t1", "/m/t1", "teacher")
cfg = ServerConfig(address="127.0.0.1:0", token_file=sys.argv[2], drain_delay=0.5, grace=30)
sys.exit(asyncio.run(serve(eng, cfg)))
