"""Peak memory of a training step, with and without each mixing callback.

CPU: `tracemalloc` does not see torch's allocator and RSS depends on glibc's caching, so the peak comes from the
allocator's own records: `torch.profiler` with `profile_memory=True` logs every allocation and free (bytes, time).
The profile starts before the Learner is built, so the running sum of those events is the memory torch holds for
this Learner (weights, gradients, optimiser state, activations, the callback's tensors); the peak of that sum inside
each training step (a `record_function` range from the first `before_batch` to the last `after_batch`) is the step's
peak. The batches themselves exist before the profile and are the same for every variant.
CUDA: `torch.cuda.max_memory_allocated()` over each step, minus the memory allocated before the Learner was built.

"activation copies": the extra peak of a step over plain training's, divided by the size of the tensor mixed in
that step (the input batch, or the output of the hidden place drawn for that step); the largest over the steps.
"""
from __future__ import annotations
import gc
import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function
from common import Config, StepControl, build_learner, fit, init_state, make_batches, seed_all, sync

STEP = 'fastmix_bench_step'


class MemSteps(StepControl):
    def __init__(self, device, base):
        super().__init__()
        self.cuda,self.base,self.peaks,self.places = torch.device(device).type == 'cuda',base,[],[]
    def step_start(self):
        if self.cuda: sync('cuda'); torch.cuda.reset_peak_memory_stats()
        self.rf = record_function(STEP); self.rf.__enter__()
    def step_end(self):
        self.rf.__exit__(None, None, None)
        if self.cuda: sync('cuda'); self.peaks.append(torch.cuda.max_memory_allocated() - self.base)
    def mark(self, event, first):
        super().mark(event, first)
        if event == 'after_loss' and not first:  # which place the callback mixed at in this step
            cb = getattr(self, 'cb', None)
            if cb is None: self.places.append('-')
            elif hasattr(cb, 'mixing'): self.places.append(cb.place[0] if cb.mixing else 'not mixed')  # fastmix
            else: self.places.append('input')  # fastai mixes every batch at the input


def _cpu_step_peaks(prof) -> list:
    "Peak of the running sum of allocations inside each step range, from the profiler's raw events"
    evs = prof.profiler.kineto_results.events()
    steps = sorted((e.start_ns(), e.end_ns()) for e in evs if e.name() == STEP)
    mem = sorted((e.start_ns(), e.nbytes()) for e in evs if e.name() == '[memory]' and str(e.device_type()).endswith('CPU'))
    t = np.array([m[0] for m in mem], dtype=np.int64)
    live = np.cumsum(np.array([m[1] for m in mem], dtype=np.int64))
    peaks = []
    for s,e in steps:
        i,j = np.searchsorted(t, s), np.searchsorted(t, e, side='right')
        before = live[i - 1] if i > 0 else 0
        peaks.append(int(max(before, live[i:j].max() if j > i else before)))
    return peaks


def activation_bytes(cfg:Config, state:dict) -> dict:
    "Bytes of the input batch and of the output of every module of resnet18 (one forward pass with hooks)"
    import torchvision
    model = torchvision.models.resnet18(num_classes=10); model.load_state_dict(state)
    sizes,hs = {},[]
    for n,m in model.named_modules():
        if n: hs.append(m.register_forward_hook(lambda mod, a, o, n=n: sizes.__setitem__(n, o.numel() * o.element_size())))
    x = torch.zeros(cfg.bs, 3, cfg.size, cfg.size)
    with torch.no_grad(): model(x)
    for h in hs: h.remove()
    sizes['input'] = x.numel() * x.element_size()
    return sizes


def _the_cb(learn, factory):
    return None if factory is None else next(cb for cb in learn.cbs if isinstance(cb, factory))


def measure(cfg:Config, factory, state, batches, warmup:int, seed:int=0) -> tuple:
    seed_all(seed)
    cuda = torch.device(cfg.device).type == 'cuda'
    # a block allocated under an earlier profile and freed under this one is logged as a free: collect the previous
    # Learners (reference cycles) first, and keep the collector off while measuring
    gc.collect()
    if cuda: sync('cuda'); base = torch.cuda.memory_allocated()
    else: base = 0
    ctl = MemSteps(cfg.device, base)
    gc.disable()
    try:
        if cuda:
            learn = build_learner(cfg, factory, state, batches, ctl)
            ctl.cb = _the_cb(learn, factory)
            fit(learn); peaks = ctl.peaks
        else:
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                learn = build_learner(cfg, factory, state, batches, ctl)
                ctl.cb = _the_cb(learn, factory)
                fit(learn)
    finally: gc.enable()
    if not cuda:
        peaks = _cpu_step_peaks(prof)
    cb = ctl.cb
    places = [n for n,_ in getattr(cb, '_places', None) or []] if cb is not None else []
    if cb is not None and not places: places = ['input']  # fastai's callbacks mix the input
    return peaks[warmup:],places,ctl.places[warmup:]


def run(cfg:Config, facs:dict, steps:int=3, warmup:int=1, seed:int=0) -> list:
    "Rows: per variant, peak MB of a step (max over steps), extra MB over plain, extra in activation copies"
    state,batches = init_state(seed),make_batches(cfg, warmup + steps, seed)
    acts = activation_bytes(cfg, state)
    res = {}
    for name,fac in facs.items():
        try: res[name] = measure(cfg, fac, state, [(x.clone(), y.clone()) for x,y in batches], warmup, seed)
        except Exception as e: print(f'memory {cfg.label}: {name} failed: {e!r}')
    plain = max(res['plain'][0])
    rows = []
    for name,(peaks,places,used) in res.items():
        extras = [p - plain for p in peaks]
        # extra of each step in units of the tensor mixed in that step (None for unmixed steps and plain training)
        copies = [e / acts[u] for e,u in zip(extras, used) if u in acts]
        rows.append(dict(config=cfg.label, device=cfg.device, variant=name, steps=len(peaks), peak_MB=max(peaks) / 2**20,
                         extra_MB=max(extras) / 2**20, activation_copies=max(copies) if copies else None,
                         per_step_extra_MB=' '.join(f'{e / 2**20:.2f}' for e in extras),
                         per_step_place=' '.join(str(u) for u in used),
                         mixed_MB=' '.join(f'{acts[u] / 2**20:.2f}' if u in acts else '-' for u in used)))
    return rows
