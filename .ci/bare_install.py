"""CI: fastmix installed bare (`pip install -e .`, no extras) gives the callbacks: `fastmix.all` imports, the README's one-line
example trains an epoch on tiny random data (drawn shapes, resnet18, CPU), compare's extra is absent and `fastmix compare`
says in one line what to install."""
import re, subprocess, sys, importlib.util
from pathlib import Path

root = Path(__file__).resolve().parent.parent
extra = ('mnist1d', 'imagecorruptions')  # the `compare` extra's modules
there = [m for m in extra if importlib.util.find_spec(m) is not None]
if there: sys.exit(f"FAIL: the bare install has the compare extra's {', '.join(there)}: settings.ini's requirements pull it in")

from fastmix.all import *
from torchvision.models import resnet18
blocks = re.findall(r'```python\n(.*?)\n```', (root/'README.md').read_text(encoding='utf-8'), re.S)
line = blocks[0].strip()  # the README's one-line example: learn = Learner(dls, resnet18(), cbs=NoisyFeatureMixup(1.0))
if not line.startswith('learn = Learner(dls'): sys.exit(f"FAIL: README.md's first python block is not the one-line example: {line!r}")
dls = shapes_dls(n_per_class=8, size=32, bs=8, device='cpu')  # 24 drawn images, 32 px: tiny random data
exec(line)
with learn.no_bar(), learn.no_logging(): learn.fit(1)
loss = learn.recorder.losses[-1]
if not torch.isfinite(loss): sys.exit(f"FAIL: the README's example trained to a loss of {loss}")
print(f"the README's example trained one epoch of {len(dls.train)} batches on the bare install, last loss {float(loss):.3f}")

r = subprocess.run(['fastmix', 'compare'], capture_output=True, text=True)
msg = r.stderr.strip().splitlines()
if r.returncode == 0 or len(msg) != 1 or 'pip install "fastmix[compare]"' not in msg[0] or r.stdout:
    sys.exit(f"FAIL: `fastmix compare` without the extra should print one line saying what to install and fail; "
             f"got status {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")
print(f"fastmix compare without the extra: status {r.returncode}, {msg[0]}")
