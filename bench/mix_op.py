"""The mixing operation alone, against the physical floor: one `torch.lerp(x[perm], x, lam)` on the same batch.

fastmix callbacks are called through their public `mix_batch((x,), (y,))`, which draws this batch's randomness and
mixes at the input exactly as a training step does (the hidden-place callbacks mix at the input there too: ManifoldMixup
and NoisyFeatureMixup as MixUp (+ noise), PatchUp as CutMix). fastai's callbacks are called through their
`before_batch` on a Learner holding the batch (a fresh copy of it each call, made outside the timed region, because
fastai's CutMix pastes into the batch in place). `perm` of the floor is drawn outside the timed region.
Rounds are interleaved (each round times one call of every variant, in a shuffled order); medians are reported.
Elements written are counted with the same dispatch mode as the training-step counts (deterministic).
"""
from __future__ import annotations
import gc
import numpy as np
import torch
from torch import nn
from fastai.basics import CrossEntropyLossFlat, DataLoaders, Learner
from common import BatchList, Config, now, seed_all, sync
from counts import Counting, OpCounter


class _AlwaysCount(Counting):
    def __init__(self): super().__init__(0); self.active = True


def _callers(cfg:Config, facs:dict, x, y):
    "name -> (prepare, call): `prepare()` runs outside the timed region, `call()` is timed"
    perm = torch.randperm(cfg.bs, device=x.device)
    lam = 0.7
    box = slice(cfg.size // 4, cfg.size // 4 + cfg.size // 2)
    def ideal_paste():
        out = x.clone(); out[..., box, box] = x[..., box, box][perm]; return out  # gathers the box only
    res = {'ideal lerp (floor)': (None, lambda: torch.lerp(x[perm], x, lam)),
           'ideal box paste (CutMix floor)': (None, ideal_paste)}
    for name,fac in facs.items():
        if fac is None: continue
        cb = fac()
        if name.startswith('fastmix.'):
            res[name] = (None, (lambda cb: lambda: cb.mix_batch((x,), (y,)))(cb))
        else:  # fastai: before_batch on a Learner that holds the batch
            learn = Learner(DataLoaders(BatchList([]), BatchList([])), nn.Linear(1, 1), loss_func=CrossEntropyLossFlat(), cbs=[cb])
            learn.training = True
            cb.before_train()  # sets stack_y (and swaps the loss, unused here)
            def prep(learn=learn): learn.xb,learn.yb = (x.clone(),),(y,)
            prep()
            res[name] = (prep, (lambda cb: lambda: cb.before_batch())(cb))
    return res


def run(cfg:Config, facs:dict, rounds:int=200, seed:int=0) -> list:
    "Rows: per variant, median µs per call, ratio to the ideal lerp, elements written per input element"
    seed_all(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg.bs, 3, cfg.size, cfg.size, generator=g).to(cfg.device)
    y = torch.randint(0, 10, (cfg.bs,), generator=g).to(cfg.device)
    callers = _callers(cfg, facs, x, y)
    names = list(callers)
    # element writes and syncs, one call each (after one warm-up call)
    writes,syncs = {},{}
    for name,(prep,call) in callers.items():
        if prep: prep()
        call()
        ctl = _AlwaysCount()
        if prep: prep()
        with OpCounter(ctl): call()
        writes[name],syncs[name] = sum(ctl.elems.values()),sum(ctl.syncs.values())
    times = {n:[] for n in names}
    rng = np.random.default_rng(seed)
    gc.disable()
    try:
        for r in range(rounds + 5):
            for i in rng.permutation(len(names)):
                prep,call = callers[names[i]]
                if prep: prep()
                sync(cfg.device)
                t0 = now(); call(); sync(cfg.device)
                if r >= 5: times[names[i]].append(now() - t0)  # 5 warm-up rounds discarded
            if r % 50 == 0: gc.collect()
    finally: gc.enable()
    floor = np.median(times['ideal lerp (floor)'])
    floor_w = writes['ideal lerp (floor)']
    return [dict(config=cfg.label, variant=n, calls=len(times[n]), us_per_call=1e6 * np.median(times[n]),
                 ratio_to_lerp=np.median(times[n]) / floor, elem_writes_per_input_elem=writes[n] / x.numel(),
                 writes_ratio_to_lerp=writes[n] / floor_w, syncs_per_call=syncs[n]) for n in names]


def loss_eval(cfg:Config, reps:int=200, seed:int=0) -> dict:
    "Median time of one `CrossEntropyLossFlat` evaluation on (bs, 10) logits with grad: the loss fastmix recomputes"
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(cfg.bs, 10, generator=g).to(cfg.device).requires_grad_()
    y = torch.randint(0, 10, (cfg.bs,), generator=g).to(cfg.device)
    lf,ts = CrossEntropyLossFlat(),[]
    for i in range(reps + 10):
        sync(cfg.device); t0 = now(); lf(pred, y); sync(cfg.device)
        if i >= 10: ts.append(now() - t0)
    ctl = _AlwaysCount()
    with OpCounter(ctl): lf(pred, y)
    return dict(config=cfg.label, us_per_loss=1e6 * float(np.median(ts)), loss_elem_writes=sum(ctl.elems.values()),
                loss_ops=sum(ctl.ops.values()))
