"""Shared pieces of the fastmix op counter: the callbacks compared, synthetic data, one Learner per variant, step markers.

Every variant of one configuration gets the same initial weights (one `state_dict`), the same batches (its own copy,
because fastai's `CutMix` pastes into the batch in place) and the same Learner set-up: torchvision resnet18
(num_classes=10), `CrossEntropyLossFlat`, fastai's default optimiser (Adam), constant learning rate, no progress bar,
no validation. Only the mixing callback differs.
"""
from __future__ import annotations
from dataclasses import dataclass
from functools import partial

import torch
import torchvision
from fastai.basics import Callback, CancelValidException, CrossEntropyLossFlat, DataLoaders, Learner, noop
from fastai.callback.progress import ProgressCallback
import fastai.callback.mixup as fastai_mixup
from fastmix.all import MixUp, CutMix, ManifoldMixup, NoisyFeatureMixup, PatchUp
from fastmix.compare.core import SkipValidate  # skip validation: only training steps are counted
from fastmix.compare.report import md_table

def factories(only=None) -> dict:
    "Variant name -> factory of a fresh callback (None for plain training). `only`: names to keep (plain always kept)"
    d = {'plain': None, 'fastmix.MixUp': MixUp, 'fastmix.CutMix': CutMix, 'fastmix.ManifoldMixup': ManifoldMixup,
         'fastmix.NoisyFeatureMixup': NoisyFeatureMixup, 'fastmix.PatchUp': PatchUp,
         'fastai.MixUp': fastai_mixup.MixUp, 'fastai.CutMix': fastai_mixup.CutMix}
    if only: d = {k:v for k,v in d.items() if k == 'plain' or k in only or k.split('.', 1)[-1] in only}
    return d


def detail_factories() -> dict:
    "One mixing place at a time, and the per-sample options: where the extra element writes come from (counts only)"
    d = {'fastmix.MixUp(per_sample=True)': partial(MixUp, per_sample=True),
         'fastmix.CutMix(per_sample=True)': partial(CutMix, per_sample=True)}
    for cls,kw in ((ManifoldMixup, {}), (NoisyFeatureMixup, {}), (PatchUp, dict(p=1.))):
        d[f'fastmix.{cls.__name__} at layer1 only'] = partial(cls, places=['layer1'], mix_input=False, **kw)
    return d


@dataclass
class Config:
    "One benchmark configuration: input side, batch size, device"
    size:int
    bs:int
    device:str = 'cpu'
    @property
    def label(self): return f'{self.size}x{self.size} bs{self.bs}'


def init_state(seed:int=0) -> dict:
    "The initial weights every variant starts from"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return {k:v.clone() for k,v in torchvision.models.resnet18(num_classes=10).state_dict().items()}


def make_batches(cfg:Config, n:int, seed:int=0) -> list:
    "`n` synthetic batches `(x, y)`: normal noise images, 10 classes, on `cfg.device`"
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(cfg.bs, 3, cfg.size, cfg.size, generator=g).to(cfg.device),
             torch.randint(0, 10, (cfg.bs,), generator=g).to(cfg.device)) for _ in range(n)]


class BatchList:
    "A minimal loader over ready batches, so that no data loading or collation runs inside the counted steps"
    def __init__(self, batches:list, device='cpu'): self.batches,self.device = batches,torch.device(device)
    def __len__(self): return len(self.batches)
    def __iter__(self): return iter(self.batches)
    def to(self, device): self.device = torch.device(device); return self


class Marks(Callback):
    "Calls `ctl.mark(event, first)` at every batch event; one instance runs first (order -1000), one last (order 1000)"
    run_valid = False
    def __init__(self, ctl, first:bool): self.ctl,self.first,self.order = ctl,first,(-1000 if first else 1000)
for _ev in ('before_batch', 'after_pred', 'after_loss', 'before_backward', 'after_backward',
            'before_step', 'after_step', 'after_batch'):
    setattr(Marks, _ev, (lambda ev: lambda self: self.ctl.mark(ev, self.first))(_ev))


class StepControl:
    "Default step control: marks the start (first `before_batch`) and the end (last `after_batch`) of each training step"
    def __init__(self): self.step = -1
    def mark(self, event:str, first:bool):
        if event == 'before_batch' and first: self.step += 1; self.step_start()
        elif event == 'after_batch' and not first: self.step_end()
    def step_start(self): pass
    def step_end(self): pass


def build_learner(cfg:Config, factory, state:dict, batches:list, ctl=None) -> Learner:
    "A Learner on `batches` with the weights `state`, the callback made by `factory` and the step markers of `ctl`"
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(state)
    model.to(cfg.device)
    dls = DataLoaders(BatchList(batches, cfg.device), BatchList([], cfg.device), device=cfg.device)
    cbs = [SkipValidate()] + ([factory()] if factory is not None else [])
    if ctl is not None: cbs += [Marks(ctl, True), Marks(ctl, False)]
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=cbs)
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])
    learn.logger = noop
    return learn


def fit(learn:Learner, lr:float=1e-3):
    "One epoch over the Learner's batches at a constant learning rate"
    # not `fastmix.testing.quiet_fit`: counts.py counts every op whose stack passes through fastmix's files as the
    # callback's, so the fit itself must not run from a fastmix file
    learn.fit(1, lr=lr)


def machine_info() -> dict:
    "nproc, CPU model and the kernels PyTorch uses on it, torch/fastai/torchvision versions, threads, device"
    import os, platform, fastai
    cpu = platform.processor() or ''
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), cpu)
    except OSError: pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
    kernels = {k: os.environ[k] for k in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS') if os.environ.get(k)}
    return dict(nproc=os.cpu_count(), cpu=cpu, cpu_capability=torch.backends.cpu.get_cpu_capability(), kernel_env=kernels, gpu=gpu,
                torch=torch.__version__, fastai=fastai.__version__, torchvision=torchvision.__version__,
                torch_threads=torch.get_num_threads(), python=platform.python_version())

