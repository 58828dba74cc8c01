"""Train with each fastmix callback under fastai's distributed training, and check what every process did.

On 2 CPU processes (gloo):  python -m torch.distributed.run --standalone --nproc_per_node 2 examples/train_distributed.py
On the GPUs of a machine:   accelerate launch examples/train_distributed.py

Each process trains a small ResNet on scikit-learn's digits with MixUp, CutMix, ManifoldMixup, NoisyFeatureMixup,
PatchUp and MixOneOf in turn, inside `learn.distrib_ctx()`, and records what it saw. Process 0 gathers the records, checks them,
prints a table and writes it to OUT/summary.json. The exit status is 1 if a check failed.
"""
import argparse, json, os, sys
from pathlib import Path
import torch, torch.distributed as dist
from torch import nn
from fastai.vision.all import *
from fastai.distributed import *
from fastmix.all import *  # after fastai, whose star-import has its own MixUp and CutMix
from fastmix.data import digits_dls
from fastmix.core import as_weight
from fastmix.testing import n_hooks, quiet_fit

def patch_cpu_broadcast():
    "fastai's `DistributedDL` broadcasts the sample order through a CUDA tensor, which gloo on CPU cannot take: use a CPU one"
    def _broadcast(self, t, rank):
        t = torch.tensor(t, dtype=torch.long); dist.broadcast(t, rank); return t.tolist()
    DistributedDL._broadcast = _broadcast

def small_resnet(n_out:int=10) -> nn.Module:
    torch.manual_seed(0)  # the same initial weights in every process
    return XResNet(ResBlock, 1, [1, 1, 1, 1], n_out=n_out, stem_szs=(8, 16, 64), widen=0.25)

class Witness(Callback):
    "Record, for each training batch, what the mixing callback did with this process's batch"
    order,run_valid = -2,False  # before_batch before the mixing callback (order -1): sees the batch unmixed
    def __init__(self, mixer): self.mixer,self.rows = mixer,[]
    def before_batch(self): self.x = self.learn.xb[0]
    def after_pred(self):
        m = self.mixer.active if isinstance(self.mixer, MixOneOf) else self.mixer  # the method drawn for this batch
        p = None if m is None else m.params  # this batch's draw, None when it is not mixed
        if p is None: return
        bs = len(self.x)
        row = dict(bs=bs, method=type(m).__name__, place=p.place, wrapped=isinstance(self.learn.model, nn.parallel.DistributedDataParallel),
                   local_perm=bool(torch.equal(p.perm.sort().values, torch.arange(bs, device=p.perm.device))),
                   lam=float(np.mean(p.lam)), batch_sum=float(self.x.sum()))
        if p.place == 'input':  # the mixed input is made from this process's batch alone
            x,xm,xo = self.x,self.learn.xb[0],self.x[p.perm]
            if isinstance(m, (CutMix, PatchUp)): row['from_local_batch'] = bool(((xm == x) | (xm == xo)).all())
            elif not isinstance(m, NoisyFeatureMixup):
                row['from_local_batch'] = bool(torch.allclose(xm, torch.lerp(xo, x, as_weight(p.lam, x)), atol=1e-6))
        self.rows.append(row)

def run_one(name:str, make_cb, dls, epochs:int, cpu:bool) -> dict:
    cb = make_cb()
    learn = Learner(dls, small_resnet(), loss_func=CrossEntropyLossFlat(), cbs=cb)
    witness = Witness(cb); learn.add_cb(witness)
    loss_func,hooks_before = learn.loss_func,n_hooks(learn.model)
    with learn.distrib_ctx(sync_bn=not cpu, cpu=cpu): quiet_fit(learn, epochs, 3e-3, one_cycle=True)  # SyncBatchNorm needs GPUs
    with learn.no_bar(): probs,targs = learn.get_preds()  # after the context: this process alone, on the whole validation set, unmixed
    flat = torch.cat([p.detach().flatten() for p in learn.model.parameters()])
    return dict(method=name, rank=rank_distrib(), batches=witness.rows,
                train_loss=float(learn.smooth_loss), accuracy=float((probs.argmax(1) == targs).float().mean()),
                unwrapped=not isinstance(learn.model, nn.parallel.DistributedDataParallel),
                hooks_left=n_hooks(learn.model) - hooks_before, loss_func_kept=learn.loss_func is loss_func,
                probs_sum_to_1=bool(torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-4)),
                params=flat.double().sum().item(), params_abs=flat.double().abs().sum().item())

METHODS = dict(MixUp=lambda: MixUp(0.4), CutMix=lambda: CutMix(1.0), ManifoldMixup=lambda: ManifoldMixup(2.0),
               NoisyFeatureMixup=lambda: NoisyFeatureMixup(1.0), PatchUp=lambda: PatchUp(),
               MixOneOf=lambda: MixOneOf([MixUp(1.0), CutMix(1.0), ManifoldMixup(2.0, mix_input=False)]))

def check(records:list) -> list:
    "Cross-process checks of one method's records (one per process): a list of (check, passed)"
    r0 = records[0]
    rows = [row for r in records for row in r['batches']]
    inputs = [row['from_local_batch'] for row in rows if 'from_local_batch' in row]
    return [
        ('every process trained with mixed batches', all(len(r['batches']) > 0 for r in records)),
        ('the model was wrapped in DistributedDataParallel', all(row['wrapped'] for row in rows)),
        ('partners come from the process\'s own batch', all(row['local_perm'] for row in rows) and all(inputs)),
        ('processes saw different batches', len({r['batches'][0]['batch_sum'] for r in records}) == len(records)),
        ('processes drew different weights', len({tuple(row['lam'] for row in r['batches']) for r in records}) == len(records)),
        ('weights stayed in sync', all(abs(r['params'] - r0['params']) < 1e-6 * max(1., r0['params_abs']) for r in records)),
        ('clean-up: unwrapped, no hooks, same loss function', all(r['unwrapped'] and r['hooks_left'] == 0 and r['loss_func_kept'] for r in records)),
        ('get_preds gives probabilities afterwards', all(r['probs_sum_to_1'] for r in records)),
        ('training loss is finite', all(np.isfinite(r['train_loss']) for r in records)),
    ]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--methods', nargs='*', default=list(METHODS), choices=list(METHODS))
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--bs', type=int, default=32, help='batch size of each process')
    ap.add_argument('--size', type=int, default=16, help='image size')
    ap.add_argument('--out', default='distributed_out')
    args = ap.parse_args(argv)
    cpu = not torch.cuda.is_available()
    if cpu: patch_cpu_broadcast()
    defaults.cpus = 0  # in-memory data: no DataLoader workers
    set_seed(42)       # the same global seed everywhere: the callbacks still draw differently in each process
    dls = digits_dls(size=args.size, bs=args.bs, device=None if cpu else 'cuda')
    results = {}
    for name in args.methods:
        rec = run_one(name, METHODS[name], dls, args.epochs, cpu)
        gathered = [None] * num_distrib() if dist.is_initialized() else [rec]
        if dist.is_initialized(): dist.all_gather_object(gathered, rec)
        results[name] = gathered
    if rank_distrib(): return 0
    summary,ok = [],True
    for name,records in results.items():
        checks = check(records)
        ok &= all(p for _,p in checks)
        summary.append(dict(method=name, processes=len(records), batches=[len(r['batches']) for r in records],
                            drawn=sorted({row['method'] for r in records for row in r['batches']}),
                            places=sorted({row['place'] for r in records for row in r['batches']}),
                            accuracy=records[0]['accuracy'], checks={c:p for c,p in checks}))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out/'summary.json').write_text(json.dumps(summary, indent=1))
    for s in summary:
        failed = [c for c,p in s['checks'].items() if not p]
        print(f"{s['method']:<18} processes {s['processes']}  mixed batches {s['batches']}  places {', '.join(s['places'])}  "
              f"accuracy {s['accuracy']:.3f}  {'all checks passed' if not failed else 'FAILED: ' + '; '.join(failed)}")
    return 0 if ok else 1

if __name__ == '__main__': sys.exit(main())
