"""What fastmix costs per training step, counted: `python bench/run.py` (about 3 minutes on 2 shared CPU cores).

For each fastmix callback and for fastai's own MixUp and CutMix, against plain training of torchvision resnet18
(num_classes=10) on synthetic batches, at each configuration (input side x batch size), `counts.py` counts the aten
ops, the elements they write and the host-device syncs (`aten._local_scalar_dense`) of whole training steps after the
first: deterministic numbers, which the machine's load does not change (wall times on a shared 2-core machine move by
5-10%, more than the overheads measured).

Results go to `bench/results/` (`counts.csv`, `detail.csv`, `machine.json`, and `benchmark.md` with every table); the
summary table is printed at the end. On a CUDA machine the steps run on the GPU (not run so far: the project's machines
have no GPU), and CUDA's sync debug mode's warnings are counted too.
"""
from __future__ import annotations
import argparse, json, os, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv=None):
    p = argparse.ArgumentParser(prog='bench/run.py', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--quick', action='store_true', help='one size (32x32 bs64), two counted steps, no per-place detail: a smoke run')
    p.add_argument('--sizes', default='32:64,64:32', help='configurations as side:batch, comma-separated')
    p.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto' (cuda when available)")
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (the counts do not depend on it)')
    p.add_argument('--steps', type=int, default=6, help='training steps counted per variant (after 1 warm-up step)')
    p.add_argument('--only', default='', help='callbacks to run, comma-separated (e.g. MixUp,fastai.CutMix); plain always runs')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=os.path.join(HERE, 'results'), help='folder for the csv, json and md results')
    a = p.parse_args(argv)
    if a.quick: a.sizes,a.steps = '32:64',2
    return a


def write_csv(path, rows):
    import csv
    if not rows: return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(rows)


def git_commit() -> str | None:
    "The repository's commit, with '+changes' when the code measured (fastmix/ or bench/) differs from it (None outside git)"
    import subprocess
    try:
        run = lambda *c: subprocess.run(['git', *c], cwd=HERE, capture_output=True, text=True, check=True).stdout.strip()
        return run('rev-parse', '--short', 'HEAD') + ('+changes' if run('status', '--porcelain', '--', '../fastmix', '.') else '')
    except (OSError, subprocess.CalledProcessError): return None


def main(argv=None):
    a = parse(argv)
    if a.threads:  # before torch is imported, so that OpenMP/MKL start with this many threads
        for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ[v] = str(a.threads)
    sys.path.insert(0, HERE)
    import warnings; warnings.filterwarnings('ignore')
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    import common, counts
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    cfgs = [common.Config(int(s), int(b), device) for s,b in (x.split(':') for x in a.sizes.split(','))]
    facs = common.factories(only=[o for o in a.only.split(',') if o])
    os.makedirs(a.out, exist_ok=True)
    info = common.machine_info()
    info['fastmix_commit'] = git_commit()
    cmd = ' '.join(['python bench/run.py'] + (argv if argv is not None else sys.argv[1:]))
    info.update(command=cmd, date=time.strftime('%Y-%m-%d %H:%M:%S %Z'), device=device, variants=list(facs),
                load_average_at_start=os.getloadavg())
    print(f"fastmix op counts on {device}: {info['cpu']} x{info['nproc']}, torch {info['torch']}, {info['torch_threads']} "
          f"thread(s); variants: {', '.join(facs)}", flush=True)
    res,t_start = {'counts': [], 'detail': []},time.time()
    for i,cfg in enumerate(cfgs):
        t = time.time(); res['counts'] += counts.run(cfg, facs, steps=a.steps, warmup=1, seed=a.seed)
        if i == 0 and not a.only and not a.quick:  # one mixing place at a time, per-sample options: first configuration only
            res['detail'] += counts.run(cfg, common.detail_factories(), steps=2, warmup=1, seed=a.seed)
        print(f'[{cfg.label}] counts done in {time.time() - t:.0f}s', flush=True)
    info.update(load_average_at_end=os.getloadavg(), seconds=round(time.time() - t_start))
    for k,rows in res.items(): write_csv(os.path.join(a.out, f'{k}.csv'), rows)
    with open(os.path.join(a.out, 'machine.json'), 'w') as f: json.dump(info, f, indent=1)
    md = report(res, info, cfgs, facs)
    with open(os.path.join(a.out, 'benchmark.md'), 'w') as f: f.write(md)
    print(md[md.index('## Summary'):md.index('## Ops,')] if '## Ops,' in md else md)
    print(f"written: {a.out}/benchmark.md and the csv files ({info['seconds']} s)")


def summary(res, cfgs, facs):
    "One row per callback: extra element writes and the callback's syncs per step, per configuration"
    get = lambda cfg, name: next((r for r in res['counts'] if r['config'] == cfg.label and r['variant'] == name), None)
    rows = []
    for name in (n for n in facs if n != 'plain'):
        r = {'callback': name}
        for cfg in cfgs:
            c = get(cfg, name)
            if c:
                r[f'extra elem writes {cfg.label}'] = f"{(c['elem_ratio'] - 1) * 100:.2f}%"
                r[f'syncs/step {cfg.label}'] = f"{c['mixer_syncs_per_step']:g}{' ✓' if c['mixer_syncs_per_step'] == 0 else ' ✗'}"
        rows.append(r)
    return rows


def report(res, info, cfgs, facs) -> str:
    from common import md_table
    out = [f"# fastmix op counts\n\nCommand: `{info['command']}` (run from the repository root)\n\n"
           f"Machine: {info['nproc']} CPU cores ({info['cpu']}), GPU: {info['gpu']}; device used: {info['device']}; torch {info['torch']} "
           f"({info['torch_threads']} thread(s)), torchvision {info['torchvision']}, fastai {info['fastai']}, Python {info['python']}. "
           f"fastmix at commit {info['fastmix_commit']}. Date: {info['date']}. Total time {info['seconds']} s.\n",
           "Model: torchvision resnet18 (num_classes=10), synthetic normal-noise batches, `CrossEntropyLossFlat`, fastai's Adam, "
           "every callback at its defaults.\n",
           "## Summary\n\n"
           "- *extra elem writes*: elements written by all aten ops of a training step, over plain training's (deterministic);\n"
           "- *syncs/step*: `aten._local_scalar_dense` calls per step from the callback's own code, each a host-device "
           "synchronisation on a GPU (✓: none).\n",
           md_table(summary(res, cfgs, facs))]
    if res['counts']:
        out += ['\n## Ops, element writes and syncs per training step (deterministic)\n\n'
                '`Melem`: million elements written per step by all aten ops; `elem_ratio`: relative to plain; '
                '`dMelem_*`: the difference from plain, by where the ops ran (`mixer`: the callback\'s own code, '
                'forward and backward of the mixing included only in `mixer`/`backward`; `loss`: the Learner\'s own loss '
                'evaluation; `opt`: optimiser step and zero_grad); `syncs`: `aten._local_scalar_dense` per step (all, and in '
                'the callback\'s code); `mixer ops`: the callback\'s aten ops per step.\n',
                md_table(res['counts'], ['config', 'variant', 'steps', 'ops_per_step', 'Melem_per_step', 'elem_ratio',
                                         'dMelem_mixer', 'dMelem_forward', 'dMelem_loss', 'dMelem_backward', 'dMelem_opt',
                                         'syncs_per_step', 'mixer_syncs_per_step', 'host_tensors_per_step', 'sync_sites'],
                         dict(ops_per_step='.1f', Melem_per_step='.3f', elem_ratio='.4f', dMelem_mixer='.3f',
                              dMelem_forward='.3f', dMelem_loss='.4f', dMelem_backward='.3f', dMelem_opt='.3f',
                              syncs_per_step='g', mixer_syncs_per_step='g', host_tensors_per_step='g')),
                '\nThe callbacks\' own aten ops per step:\n',
                md_table([r for r in res['counts'] if r['variant'] != 'plain'], ['config', 'variant', 'mixer_ops'])]
    if res['detail']:
        out += ['\n## Where the extra writes come from: one mixing place at a time, per-sample options\n\n'
                'The same counts (2 steps after a warm-up) for the hidden-place callbacks restricted to `places=[\'layer1\']`, '
                '`mix_input=False` (PatchUp with `p=1`), and for the `per_sample=True` options of MixUp and CutMix. '
                '`dMelem_backward` is the extra backward work of mixing a tensor that requires grad.\n',
                md_table([r for r in res['detail'] if r['variant'] != 'plain'],
                         ['config', 'variant', 'elem_ratio', 'dMelem_mixer', 'dMelem_backward', 'mixer_syncs_per_step',
                          'host_tensors_per_step', 'mixer_ops'],
                         dict(elem_ratio='.4f', dMelem_mixer='.3f', dMelem_backward='.3f', mixer_syncs_per_step='g',
                              host_tensors_per_step='g'))]
    return '\n'.join(out)


if __name__ == '__main__': main()
