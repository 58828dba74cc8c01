"""Deterministic cost of whole fastai training steps: aten ops, elements written, and host-device syncs.

A `TorchDispatchMode` sees every aten op a training step runs (forward, loss, backward, optimiser, callbacks). For each
op it adds the number of elements the op writes: every fresh output tensor, and every argument the op mutates
(in-place and `out=` ops); views and `empty*` allocations write nothing. `aten._local_scalar_dense` is counted apart: it is what `.item()`,
`bool(t)`, `int(t)`, a tensor used as a slice bound or a Python number, become, and each one is a host-device
synchronisation on a GPU. The numbers do not depend on the machine's load: they are the hard evidence on a shared CPU.

Each op is put in one category: `mixer` when the Python stack holds the mixing callback's own code (fastmix's package,
or `fastai/callback/mixup.py`), else the part of the step it runs in (forward, loss, backward, opt = the optimiser step
and zero_grad, other = other callbacks such as the Recorder).
`host_tensors_per_step` counts `aten.lift_fresh` in the callback's code: tensors made from Python or NumPy data
(`torch.as_tensor(array)`); made with `device='cuda'` (or moved there without `non_blocking`), each is a blocking
host-to-device copy on a GPU, which a CPU run cannot see as such.
"""
from __future__ import annotations
import os, sys, warnings
from collections import Counter
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from fastai.torch_core import set_seed
from common import Config, StepControl, build_learner, fit, init_state, make_batches

import fastmix, fastai
MIXER_FILES = (os.path.dirname(os.path.abspath(fastmix.__file__)) + os.sep,
               os.path.join(os.path.dirname(os.path.abspath(fastai.__file__)), 'callback', 'mixup.py'))
TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
SYNC = torch.ops.aten._local_scalar_dense.default
PHASES = {'before_batch':'forward', 'after_pred':'loss', 'after_loss':'other', 'before_backward':'backward',
          'after_backward':'other', 'before_step':'opt', 'after_step':'opt', 'after_batch':'other'}
CATS = ('mixer', 'forward', 'loss', 'backward', 'opt', 'other')


def _tensors(o):
    if isinstance(o, torch.Tensor): yield o
    elif isinstance(o, (list, tuple)):
        for x in o: yield from _tensors(x)


def _numel(o) -> int: return sum(t.numel() for t in _tensors(o))


NO_WRITE = {'empty', 'empty_like', 'empty_strided', 'new_empty', 'new_empty_strided'}  # allocate, write nothing


def elements_written(func, args, kwargs, out) -> int:
    "Elements `func` wrote: its fresh outputs and the arguments it mutates (views and `empty*` write nothing)"
    if func._schema.name.split('::')[-1] in NO_WRITE: return 0
    schema,n = func._schema,0
    for i,a in enumerate(schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write:
            n += _numel(args[i] if i < len(args) else kwargs.get(a.name))
    outs = out if len(schema.returns) > 1 else (out,)
    for r,o in zip(schema.returns, outs):
        if r.alias_info is None: n += _numel(o)
    return n


def _site(frame) -> tuple:
    "(in mixer code?, first frame outside torch as 'file:line')"
    mixer,site = False,None
    f = frame
    while f is not None:
        fn = f.f_code.co_filename
        if site is None and not fn.startswith(TORCH_DIR) and not fn.endswith('_python_dispatch.py'):
            path = fn.split('site-packages' + os.sep)[-1] if 'site-packages' in fn else os.path.relpath(fn, os.path.dirname(os.path.dirname(MIXER_FILES[0])))
            site = f'{path}:{f.f_lineno}'
        if fn.startswith(MIXER_FILES[0]) or fn == MIXER_FILES[1]: mixer = True; break
        f = f.f_back
    return mixer,site


class Counting(StepControl):
    "Step control that counts ops, element writes and syncs per category in steps `>= warmup`"
    def __init__(self, warmup:int):
        super().__init__()
        self.warmup,self.active,self.phase = warmup,False,'other'
        self.ops,self.elems,self.syncs = Counter(),Counter(),Counter()
        self.sync_sites,self.syncs_outside,self.opnames,self.host = Counter(),0,Counter(),0
    def mark(self, event, first):
        super().mark(event, first)
        self.phase = 'other' if first else PHASES[event]
    def step_start(self): self.active = self.step >= self.warmup
    def step_end(self): self.active = False
    def record(self, func, args, kwargs, out):
        if not self.active:
            if func is SYNC: self.syncs_outside += 1
            return
        mixer,site = _site(sys._getframe(2))
        cat = 'mixer' if mixer else self.phase
        self.ops[cat] += 1
        self.elems[cat] += elements_written(func, args, kwargs, out)
        if mixer:
            self.opnames[str(func)] += 1
            if func._schema.name.startswith('aten::lift_fresh'): self.host += 1
        if func is SYNC:
            self.syncs[cat] += 1
            self.sync_sites[site] += 1


class OpCounter(TorchDispatchMode):
    def __init__(self, ctl): super().__init__(); self.ctl = ctl
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ctl.record(func, args, kwargs, out)
        return out


def count_fit(cfg:Config, factory, state, batches, warmup:int, seed:int=0) -> Counting:
    "Train one epoch on `batches` under the counter; return the counts of the steps after `warmup`"
    set_seed(seed)
    ctl = Counting(warmup)
    learn = build_learner(cfg, factory, state, batches, ctl)
    cuda = torch.device(cfg.device).type == 'cuda'
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        if cuda: torch.cuda.set_sync_debug_mode('warn')  # CUDA only: also counts blocking copies
        try:
            with OpCounter(ctl): fit(learn)
        finally:
            if cuda: torch.cuda.set_sync_debug_mode(0)
    ctl.cuda_sync_warnings = sum('synchroniz' in str(w.message) for w in ws)
    ctl.learn = learn
    return ctl


def run(cfg:Config, facs:dict, steps:int=8, warmup:int=1, seed:int=0) -> list:
    "Rows: per variant, ops, element writes and syncs per step, by category, and the ratio of element writes to plain"
    state,batches = init_state(seed),make_batches(cfg, warmup + steps, seed)
    if 'plain' not in facs: facs = {'plain': None, **facs}
    res = {}
    for name,fac in facs.items():
        try: res[name] = count_fit(cfg, fac, state, [(x.clone(), y.clone()) for x,y in batches], warmup, seed)
        except Exception as e: print(f'counts {cfg.label}: {name} failed: {e!r}')
    base = res['plain']
    tot = lambda c, what: sum(getattr(c, what).values())
    rows = []
    for name,c in res.items():
        r = dict(config=cfg.label, variant=name, steps=steps,
                 ops_per_step=tot(c, 'ops') / steps, Melem_per_step=tot(c, 'elems') / steps / 1e6,
                 elem_ratio=tot(c, 'elems') / tot(base, 'elems'), extra_ops_per_step=(tot(c, 'ops') - tot(base, 'ops')) / steps)
        for cat in CATS: r[f'dMelem_{cat}'] = (c.elems[cat] - base.elems[cat]) / steps / 1e6
        r['syncs_per_step'] = tot(c, 'syncs') / steps
        r['mixer_syncs_per_step'] = c.syncs['mixer'] / steps
        r['host_tensors_per_step'] = c.host / steps
        r['syncs_outside_steps'] = c.syncs_outside
        r['sync_sites'] = '; '.join(f'{s} x{n // steps if n % steps == 0 else n / steps}' for s,n in c.sync_sites.items())
        r['mixer_ops'] = ', '.join(f"{k.replace('aten.', '').replace('.default', '')}:{v / steps:g}"
                                   for k,v in c.opnames.most_common(12))
        if torch.device(cfg.device).type == 'cuda': r['cuda_sync_warnings'] = c.cuda_sync_warnings
        rows.append(r)
    return rows
