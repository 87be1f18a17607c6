import sys
from pathlib import Path

# Lets the benchmark modules share helpers without making benchmarks/ a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
