"""What fastmix costs: the whole benchmark in one command.

    .venv/bin/python bench/run.py            # defaults, about 10 minutes on 2 shared CPU cores
    .venv/bin/python bench/run.py --quick    # one input size, few steps: a smoke run of a couple of minutes

For each fastmix callback and for fastai's own MixUp and CutMix, against plain training of torchvision resnet18
(num_classes=10) on synthetic batches, at each configuration (input side x batch size):

1. step time: wall time of whole fastai training steps relative to plain training, interleaved step by step
   (`step_time.py`);
2. counts: aten ops, elements written and host-device syncs (`aten._local_scalar_dense`) per training step,
   deterministic (`counts.py`);
3. mixing op: the mixing operation alone against one `torch.lerp(x[perm], x, lam)` (`mix_op.py`);
4. memory: peak memory of a training step against plain training (`memory.py`).

Results go to `bench/results/` (one csv per part, `machine.json`, and `benchmark.md` with every table); the
summary table is printed at the end. On a CUDA machine everything runs on the GPU (not run so far: the project's
machines have no GPU).
"""
from __future__ import annotations
import argparse, json, os, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = dict(step_cpu=1.03, step_gpu=1.02, mix=1.5, copies=1.0)


def parse(argv=None):
    p = argparse.ArgumentParser(prog='bench/run.py', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--quick', action='store_true', help='one size (32x32 bs64), few steps and rounds: a smoke run')
    p.add_argument('--sizes', default='32:64,64:32', help='configurations as side:batch, comma-separated')
    p.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto' (cuda when available)")
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads; 1 by default: on a shared 2-core machine two OpenMP threads make step times '
                        'swing by several times, one thread keeps them within about 10%%')
    p.add_argument('--steps', type=int, default=16, help='timed training steps per variant (step time)')
    p.add_argument('--warmup', type=int, default=2, help='discarded warm-up steps per variant (step time)')
    p.add_argument('--count-steps', type=int, default=6, help='training steps counted per variant (after 1 warm-up step)')
    p.add_argument('--mem-steps', type=int, default=4, help='training steps measured per variant (after 1 warm-up step)')
    p.add_argument('--mix-rounds', type=int, default=200, help='interleaved rounds of the mixing-op timing')
    p.add_argument('--parts', default='time,counts,mix,memory', help='which parts to run, comma-separated')
    p.add_argument('--only', default='', help='callbacks to run, comma-separated (e.g. MixUp,fastai.CutMix); plain always runs')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=os.path.join(HERE, 'results'), help='folder for the csv, json and md results')
    a = p.parse_args(argv)
    if a.quick:
        a.sizes,a.steps,a.warmup,a.count_steps,a.mem_steps,a.mix_rounds = '32:64',4,1,2,2,50
    return a


def write_csv(path, rows):
    import csv
    if not rows: return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(rows)


def main(argv=None):
    a = parse(argv)
    if os.environ.get('MALLOC_ARENA_MAX') != '1':
        # Every variant's Learner steps in its own thread (step_time.py); glibc then gives each thread its own malloc
        # arena, and an arena's history alone can make one Learner page-fault ~40,000 times a step and run 20% slower.
        # One arena for all threads is what a single training thread gets: restart this process with it.
        args = argv if argv is not None else sys.argv[1:]
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *args], dict(os.environ, MALLOC_ARENA_MAX='1'))
    if a.threads:  # before torch is imported, so that OpenMP/MKL start with this many threads
        for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ[v] = str(a.threads)
    sys.path.insert(0, HERE)
    import warnings; warnings.filterwarnings('ignore')
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    import common, step_time, counts, mix_op, memory
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    cfgs = [common.Config(int(s), int(b), device) for s,b in (x.split(':') for x in a.sizes.split(','))]
    facs = common.factories(only=[o for o in a.only.split(',') if o])
    parts = set(a.parts.split(','))
    os.makedirs(a.out, exist_ok=True)
    info = common.machine_info()
    cmd = ' '.join(['.venv/bin/python bench/run.py'] + (argv if argv is not None else sys.argv[1:]))
    info.update(command=cmd, date=time.strftime('%Y-%m-%d %H:%M:%S %Z'), device=device, variants=list(facs),
                load_average_at_start=os.getloadavg())
    print(f"fastmix benchmark on {device}: {info['cpu']} x{info['nproc']}, torch {info['torch']}, {info['torch_threads']} "
          f"thread(s), load average {os.getloadavg()[0]:.1f}; variants: {', '.join(facs)}", flush=True)
    res,t_start = {k:[] for k in ('time', 'counts', 'detail', 'mix', 'loss', 'memory')},time.time()
    for i,cfg in enumerate(cfgs):
        if 'counts' in parts:
            t = time.time(); res['counts'] += counts.run(cfg, facs, steps=a.count_steps, warmup=1, seed=a.seed)
            if i == 0 and not a.only:  # one mixing place at a time, per-sample options: first configuration only
                res['detail'] += counts.run(cfg, common.detail_factories(), steps=2, warmup=1, seed=a.seed)
            print(f'[{cfg.label}] counts done in {time.time() - t:.0f}s', flush=True)
        if 'mix' in parts:
            t = time.time(); res['mix'] += mix_op.run(cfg, facs, rounds=a.mix_rounds, seed=a.seed)
            res['loss'].append(mix_op.loss_eval(cfg, seed=a.seed))
            print(f'[{cfg.label}] mixing op done in {time.time() - t:.0f}s', flush=True)
        if 'memory' in parts:
            t = time.time(); res['memory'] += memory.run(cfg, facs, steps=a.mem_steps, warmup=1, seed=a.seed)
            print(f'[{cfg.label}] memory done in {time.time() - t:.0f}s', flush=True)
        if 'time' in parts:
            t = time.time(); res['time'] += step_time.run(cfg, facs, steps=a.steps, warmup=a.warmup, seed=a.seed, threads=a.threads or 0)
            print(f'[{cfg.label}] step time done in {time.time() - t:.0f}s', flush=True)
    info.update(load_average_at_end=os.getloadavg(), seconds=round(time.time() - t_start))
    for k,rows in res.items(): write_csv(os.path.join(a.out, f'{k}.csv'), rows)
    with open(os.path.join(a.out, 'machine.json'), 'w') as f: json.dump(info, f, indent=1)
    md = report(res, info, cfgs, facs)
    with open(os.path.join(a.out, 'benchmark.md'), 'w') as f: f.write(md)
    print(md[md.index('## Summary'):md.index('## Step time')] if '## Step time' in md else md)
    print(f"written: {a.out}/benchmark.md and the csv files ({info['seconds']} s)")


def _fmt_ratio(v): return f'{v:.3f}'
def _ok(v, lim): return '' if v is None else (' ✓' if v <= lim else ' ✗')


def summary(res, cfgs, facs, device):
    "One row per callback: the key number of each part, per configuration, with the targets"
    import step_time
    lim = TARGETS['step_gpu' if device == 'cuda' else 'step_cpu']
    get = lambda part, cfg, name: next((r for r in res[part] if r['config'] == cfg.label and r['variant'] == name), None)
    rows = []
    names = [n for n in facs if n != 'plain'] + ([step_time.CONTROL] if any(r['variant'] == step_time.CONTROL for r in res['time']) else [])
    for name in names:
        r = {'callback': name}
        for cfg in cfgs:
            t,c,m,mem = get('time', cfg, name),get('counts', cfg, name),get('mix', cfg, name),get('memory', cfg, name)
            s = cfg.label
            if t:
                r[f'step time {s}'] = f"{t['ratio']:.3f} [{t['ratio_q25']:.2f}-{t['ratio_q75']:.2f}]{_ok(t['ratio'], lim)}"
                if device == 'cpu': r[f'step CPU time {s}'] = f"{t['cpu_ratio']:.3f} [{t['cpu_ratio_q25']:.2f}-{t['cpu_ratio_q75']:.2f}]"
            if c:
                r[f'elem writes {s}'] = f"{c['elem_ratio']:.4f}"
                r[f'syncs/step {s}'] = f"{c['mixer_syncs_per_step']:g}{_ok(c['mixer_syncs_per_step'], 0)}"
            if m: r[f'mix op / lerp {s}'] = f"{m['ratio_to_lerp']:.2f} ({m['writes_ratio_to_lerp']:.2f}){_ok(m['ratio_to_lerp'], TARGETS['mix'])}"
            if mem and mem['activation_copies'] is not None:
                r[f'extra peak {s}'] = f"{mem['activation_copies']:.2f}{_ok(mem['activation_copies'], TARGETS['copies'] + 0.05)}"
        rows.append(r)
    return rows


def report(res, info, cfgs, facs) -> str:
    from common import md_table
    dev = info['device']
    lim = TARGETS['step_gpu' if dev == 'cuda' else 'step_cpu']
    f3 = lambda v: f'{v:.3f}'
    out = [f"# fastmix benchmark results\n\nCommand: `{info['command']}` (run from the repository root)\n\n"
           f"Machine: {info['nproc']} CPU cores ({info['cpu']}), GPU: {info['gpu']}; device used: {dev}; torch {info['torch']} "
           f"({info['torch_threads']} thread(s)), torchvision {info['torchvision']}, fastai {info['fastai']}, Python {info['python']}. "
           f"Date: {info['date']}. Load average (1, 5, 15 min) at start {tuple(round(x, 1) for x in info['load_average_at_start'])}, "
           f"at end {tuple(round(x, 1) for x in info['load_average_at_end'])}. Total time {info['seconds']} s.\n",
           "Model: torchvision resnet18 (num_classes=10), synthetic normal-noise batches, `CrossEntropyLossFlat`, fastai's Adam, "
           "every callback at its defaults.\n",
           f"## Summary\n\nTargets: step time <= {lim}x plain training ({'GPU' if dev == 'cuda' else 'CPU'}), zero syncs per "
           f"step in the callback's code, mixing op <= {TARGETS['mix']}x one `torch.lerp(x[perm], x, lam)`, extra peak memory "
           "<= one copy of the mixed tensor (✓ met, ✗ missed).\n\n"
           "- *step time*: median over interleaved rounds of (callback step / plain step in the same round), [quartiles]: "
           "wall time, noisy on a shared machine (the A/A control row, a second plain Learner, shows how noisy);\n"
           "- *step CPU time*: the same with the process CPU time of each step (CPU runs only): time taken by other "
           "processes does not count in it;\n"
           "- *elem writes*: elements written by all aten ops of a training step, relative to plain training (deterministic);\n"
           "- *syncs/step*: `aten._local_scalar_dense` calls per step from the callback's own code (deterministic);\n"
           "- *mix op / lerp*: time of the mixing operation alone relative to the ideal lerp, (elements written relative to the lerp's);\n"
           "- *extra peak*: extra peak memory of a step over plain training, in copies of the tensor mixed in that step "
           "(largest over the measured steps).\n",
           md_table(summary(res, cfgs, facs, dev))]
    if res['time']:
        out += ['\n## Step time\n\nWall time of whole fastai training steps (forward, loss, backward, optimiser step, all '
                'callback events; no data loading), every variant in its own Learner, same initial weights and batches, '
                'interleaved step by step in shuffled order, warm-up steps discarded. `ratio`: median over rounds of the '
                'paired ratio to plain; `q25`/`q75`: its quartiles; `ratio_of_medians`: median step time / plain median; '
                '`cpu_*`: the same for the process CPU time of the step; `page_faults_per_step`: minor page faults of '
                'the stepping thread (a check on the allocator: they should be alike for all variants).\n',
                md_table(res['time'], ['config', 'device', 'variant', 'steps', 'ms_per_step', 'ratio', 'ratio_q25', 'ratio_q75',
                                       'ratio_of_medians', 'cpu_ms_per_step', 'cpu_ratio', 'cpu_ratio_q25', 'cpu_ratio_q75',
                                       'page_faults_per_step'],
                         dict(ms_per_step='.1f', ratio=f3, ratio_q25=f3, ratio_q75=f3, ratio_of_medians=f3, cpu_ms_per_step='.1f',
                              cpu_ratio=f3, cpu_ratio_q25=f3, cpu_ratio_q75=f3, page_faults_per_step='.0f'))]
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
    if res['mix']:
        out += ['\n## The mixing operation alone\n\nfastmix: `cb.mix_batch((x,), (y,))` (draws and mixes one batch at the '
                'input, as a training step does); fastai: `cb.before_batch()` on a Learner holding the batch. Floor: '
                '`torch.lerp(x[perm], x, lam)` with `perm` drawn beforehand; a clone plus a pasted half-side box is shown too '
                '(the floor of CutMix-like pasting). Median of interleaved calls.\n',
                md_table(res['mix'], ['config', 'variant', 'calls', 'us_per_call', 'ratio_to_lerp', 'elem_writes_per_input_elem',
                                      'writes_ratio_to_lerp', 'syncs_per_call'],
                         dict(us_per_call='.1f', ratio_to_lerp='.2f', elem_writes_per_input_elem='.3f', writes_ratio_to_lerp='.3f'))]
    if res['loss']:
        plain = {r['config']:r['ms_per_step'] for r in res['time'] if r['variant'] == 'plain'}
        rows = [dict(r, pct_of_plain_step=(100 * r['us_per_loss'] / 1e3 / plain[r['config']]) if r['config'] in plain else None)
                for r in res['loss']]
        out += ['\n## The loss fastmix recomputes\n\nfastmix computes the mixed loss in `after_loss`, after the Learner has '
                'computed its ordinary loss on the unmixed targets: one extra loss evaluation per mixed step (not a model '
                'forward). Its cost, measured alone (`CrossEntropyLossFlat` on (bs, 10) logits, with grad):\n',
                md_table(rows, ['config', 'us_per_loss', 'loss_ops', 'loss_elem_writes', 'pct_of_plain_step'],
                         dict(us_per_loss='.1f', pct_of_plain_step='.3f'))]
    if res['memory']:
        out += ['\n## Peak memory of a training step\n\n' + ('`torch.cuda.max_memory_allocated` per step.' if dev == 'cuda' else
                'From the CPU allocator\'s records (`torch.profiler`, `profile_memory=True`): the peak, inside each step, of '
                'the memory torch holds for the Learner (weights, grads, optimiser state, activations, callback tensors).') +
                ' `extra_MB`: the largest extra over plain training\'s peak; per step: the extra, the place mixed in that step '
                'and the size of the mixed tensor; `activation_copies`: largest extra / mixed tensor size.\n',
                md_table(res['memory'], ['config', 'variant', 'steps', 'peak_MB', 'extra_MB', 'activation_copies',
                                         'per_step_extra_MB', 'per_step_place', 'mixed_MB'],
                         dict(peak_MB='.2f', extra_MB='.2f', activation_copies='.2f'))]
    return '\n'.join(out)


if __name__ == '__main__': main()
