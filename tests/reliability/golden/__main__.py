"""``python -m tests.reliability.golden``: write golden files that do not exist yet."""

from tests.reliability.golden import write_missing

for path in write_missing():
    print(f"wrote {path}")
