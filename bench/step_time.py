"""Wall time of whole fastai training steps, each mixing callback against plain training, interleaved step by step.

Every variant trains its own Learner (same initial weights, same batches) in its own thread, but only one thread runs
at a time: a baton passes between them, and in each round every variant does exactly one training step, in a freshly
shuffled order. A step is timed from the first `before_batch` callback to the last `after_batch` callback (forward,
loss, backward, optimiser step, zero_grad, every callback event; no data loading). On CUDA the device is synchronised
at both ends of the timed region only. The first `warmup` rounds are discarded.
Run it with `MALLOC_ARENA_MAX=1` (`run.py` does): with one glibc malloc arena per thread, an arena's history alone
made one Learner page-fault ~40,000 times a step (others: ~20) and run 20% slower; `page_faults_per_step` shows it.
Both the wall time and the process CPU time (`time.process_time`) of each step are recorded: while one variant steps,
every other thread of the process waits, so the CPU time is the step's own work, and time stolen by other processes
on a shared machine does not count in it (with one torch thread it is the most stable measure on a shared CPU; on a
GPU only the wall time means anything). The ratio of a variant is the
median over rounds of (its step time / plain's step time in the same round). A second plain Learner (the A/A
control) is timed like the callbacks: its ratio, ideally 1, shows the bias and noise of the method itself.
"""
from __future__ import annotations
import gc, os, resource, threading, time, traceback
import numpy as np
import torch
from common import (Config, StepControl, build_learner, clone_batches, fit, make_batches, init_state, now, seed_all, sync)


class Baton:
    "Only the holder runs; the scheduler hands the baton to one variant at a time"
    def __init__(self): self.cv,self.holder = threading.Condition(),None
    def take(self, name):
        with self.cv: self.cv.wait_for(lambda: self.holder == name)
    def give_back(self, name):
        with self.cv:
            if self.holder == name: self.holder = None; self.cv.notify_all()
    def grant(self, name):
        with self.cv:
            self.holder = name; self.cv.notify_all()
            self.cv.wait_for(lambda: self.holder is None)


class TimedSteps(StepControl):
    def __init__(self, name, baton, n_steps, device):
        super().__init__()
        self.name,self.baton,self.n_steps,self.device,self.times,self.cpu,self.faults = name,baton,n_steps,device,[],[],[]
    def step_start(self):
        if self.step > 0: self.baton.take(self.name)  # step 0 runs in the turn that built the Learner
        gc.collect(1)
        sync(self.device)
        self.f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        self.t0,self.c0 = now(),time.process_time()
    def step_end(self):
        sync(self.device)
        self.times.append(now() - self.t0); self.cpu.append(time.process_time() - self.c0)
        self.faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - self.f0)
        if self.step < self.n_steps - 1: self.baton.give_back(self.name)  # the last turn also covers the end of fit


def _worker(name, factory, cfg, state, batches, baton, ctl, threads, errors):
    torch.set_num_threads(threads)
    baton.take(name)
    try:
        learn = build_learner(cfg, factory, state, batches, ctl)
        fit(learn)
        if len(ctl.times) != ctl.n_steps: raise RuntimeError(f'{name}: {len(ctl.times)} steps timed, not {ctl.n_steps}')
    except Exception as e:
        errors[name] = ''.join(traceback.format_exception(e))
    finally:
        baton.give_back(name)


CONTROL = 'plain (A/A control)'


def run(cfg:Config, facs:dict, steps:int=16, warmup:int=2, seed:int=0, threads:int=1, control:bool=True) -> list:
    "Rows: variant, ms per step (median), ratio to plain (median of paired ratios) and its quartiles"
    if os.environ.get('MALLOC_ARENA_MAX') != '1':
        print('step_time: warning: MALLOC_ARENA_MAX is not 1; per-thread malloc arenas can make one variant page-fault '
              'heavily and look 20% slower (bench/run.py sets it)')
    if control: facs = {**facs, CONTROL: None}  # a second plain Learner: its ratio shows the noise of the method
    n = warmup + steps
    state,base = init_state(seed),make_batches(cfg, n, seed)
    baton,errors,ctls,threads_ = Baton(),{},{},[]
    seed_all(seed)
    for name,fac in facs.items():
        ctls[name] = TimedSteps(name, baton, n, cfg.device)
        t = threading.Thread(target=_worker, args=(name, fac, cfg, state, clone_batches(base), baton, ctls[name], threads, errors),
                             daemon=True)
        t.start(); threads_.append(t)
    rng = np.random.default_rng(seed)
    names = list(facs)
    gc.disable()
    try:
        for r in range(n):
            for i in rng.permutation(len(names)):
                if names[i] not in errors: baton.grant(names[i])
    finally: gc.enable()
    for t in threads_: t.join()
    for name,err in errors.items(): print(f'step_time {cfg.label}: {name} failed:\n{err}')
    plain,plain_cpu = np.array(ctls['plain'].times[warmup:]),np.array(ctls['plain'].cpu[warmup:])
    rows = []
    for name in names:
        if name in errors: continue
        t,c = np.array(ctls[name].times[warmup:]),np.array(ctls[name].cpu[warmup:])
        ratios,cratios = t / plain,c / plain_cpu
        rows.append(dict(config=cfg.label, device=cfg.device, variant=name, steps=len(t), ms_per_step=1e3*np.median(t),
                         ratio=float(np.median(ratios)), ratio_q25=float(np.quantile(ratios, .25)),
                         ratio_q75=float(np.quantile(ratios, .75)),
                         ratio_of_medians=float(np.median(t) / np.median(plain)),
                         cpu_ms_per_step=1e3*np.median(c), cpu_ratio=float(np.median(cratios)),
                         cpu_ratio_q25=float(np.quantile(cratios, .25)), cpu_ratio_q75=float(np.quantile(cratios, .75)),
                         page_faults_per_step=float(np.median(ctls[name].faults[warmup:]))))
    return rows
