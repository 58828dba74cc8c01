"""Build fastmix's documentation site from the notebooks in `nbs/` into `_docs/`: `python tools/build_docs.py`.

nbdev's own `nbdev-docs` needs the Quarto binary, which cannot be installed everywhere, so the site is built with Sphinx,
myst-nb and the Furo theme (all from PyPI, in the `dev` extra; nothing is downloaded at build time). Each notebook
becomes one page, rendered from its committed outputs (nothing is executed), in the notebooks' order, with search.
What nbdev's site would do is done here first, on copies in `_proc/site/`:

- cells marked `#| hide` (or `#| include: false`) are left out; `#| ...` directive lines are removed from shown code;
- `show_doc` cells show their output (signature and argument table) without their code, as nbdev's site does;
- links to notebooks (`nbs/05_manifold.ipynb` in the README's notebook, `05_manifold.ipynb` in the others) become links
  to pages; links to other files of the repository (`../examples/...`) become downloads of those files;
- `show_doc`'s "source" links, which need a GitHub address fastmix does not set, point to highlighted copies of the
  modules in `_docs/_code/`, at the line.

Sphinx runs with warnings as errors, so a link to a missing page or heading fails the build. `tools/check_docs.py`
then checks every link of the built site and takes screenshots in headless Chromium.
"""
from __future__ import annotations
import argparse, json, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, STAGE, OUT = ROOT/'nbs', ROOT/'_proc'/'site', ROOT/'_docs'
BUILD = ROOT/'_proc'/'build'   # Sphinx writes here (myst-nb puts its images beside the html folder), then it moves to _docs
DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
LINK = re.compile(r'(\]\(|href=")([^)"\s]+)')
SOURCE_LINK = re.compile(r'\[source\]\(/blob/[^/]+/([^)#]+)(?:#L(\d+))?\)(\{[^}]*\})?')

CONF = '''# Written by tools/build_docs.py: edit it there.
project = 'fastmix'
author = 'fastmix developers'
copyright = '2026 onwards, fastmix developers'
extensions = ['myst_nb']
root_doc = 'index'
exclude_patterns = ['_build', '**.ipynb_checkpoints']
html_theme = 'furo'
html_title = 'fastmix'
html_static_path = ['_static']
html_css_files = ['fastmix.css']
html_show_sourcelink = False
html_copy_source = False
nb_execution_mode = 'off'            # render the committed outputs, run nothing
nb_render_markdown_format = 'myst'   # show_doc's markdown: headings, tables, fenced signatures
nb_merge_streams = True
nb_output_stderr = 'remove'
myst_enable_extensions = ['dollarmath', 'colon_fence', 'attrs_inline']
myst_heading_anchors = 4             # '#reading-a-folder-for-compare'-style links between and inside pages
suppress_warnings = ['myst.header']  # show_doc outputs start at '###' under a page's '##'
'''

CSS = '''/* Written by tools/build_docs.py */
a.fm-source { float: right; font-size: smaller; }
.cell_output table { font-size: 0.85em; }
'''


def text(src) -> str: return ''.join(src) if isinstance(src, list) else src


def directives(src:str) -> tuple[dict, str]:
    "nbdev directives (`#| hide`, `#| eval: false`, ...) of a cell, and its source without them"
    ds,kept = {},[]
    for line in src.splitlines():
        m = DIRECTIVE.match(line)
        if m: ds[m.group(1)] = m.group(2)
        else: kept.append(line)
    return ds, '\n'.join(kept).strip('\n')


class Linker:
    "Rewrites a notebook's links for the site; remembers repository files to copy and what it could not resolve"
    def __init__(self, pages:set): self.pages,self.files,self.missing = pages,set(),[]

    def target(self, nb:str, url:str) -> str:
        if re.match(r'^[a-z][a-z0-9+.-]*:', url, re.I) or url.startswith('#'): return url  # http(s):, mailto:, in-page
        path,_,frag = url.partition('#')
        frag = '#' + frag if frag else ''
        src = (NBS/path).resolve() if nb != 'index' or not path.startswith('nbs/') else (ROOT/path).resolve()
        if src.suffix == '.ipynb' and src.parent == NBS:
            if src.stem not in self.pages: self.missing.append(f'{nb}.ipynb: {url} (no such notebook)')
            return f'{src.stem}.ipynb{frag}'
        if src.is_file() and ROOT in src.parents:   # a file of the repository: shipped with the site as a download
            rel = src.relative_to(ROOT).as_posix()
            self.files.add(rel)
            return f'_repo/{rel}{frag}'
        return url  # not a path of this repository (e.g. the code `x[i](10)`): left as it is

    def markdown(self, nb:str, src:str) -> str:
        return LINK.sub(lambda m: m.group(1) + self.target(nb, m.group(2)), src)


def source_link(m) -> str:
    "show_doc's `[source](/blob/main/fastmix/x.py#L33){...}` -> a link to the highlighted module at that line"
    path,line = m.group(1),m.group(2)
    return f'<a class="fm-source" href="_code/{path}.html{"#L-" + line if line else ""}">[source]</a>'


def stage_notebook(path:Path, linker:Linker) -> dict:
    "A copy of one notebook as the site shows it"
    nb,name = json.loads(path.read_text(encoding='utf-8')),path.stem
    cells = []
    for cell in nb['cells']:
        ds,src = directives(text(cell['source']))
        if 'hide' in ds or ds.get('include') == 'false': continue
        tags = set(cell.get('metadata', {}).get('tags', []))
        if cell['cell_type'] == 'markdown':
            src = linker.markdown(name, src)
        elif cell['cell_type'] == 'code':
            lines = [l for l in src.splitlines() if l.strip()]
            if lines and all(l.startswith('show_doc(') for l in lines) or ds.get('echo') == 'false': tags.add('remove-input')
            if ds.get('output') == 'false': tags.add('remove-output')
            for o in cell.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is None: continue
                md = SOURCE_LINK.sub(source_link, text(md))
                # show_doc's opening `---` (a docutils transition, invalid inside an output) -> an HTML rule
                md = re.sub(r'\A\s*---\s*\n', '<hr class="fm-doc">\n\n', md)
                o['data']['text/markdown'] = linker.markdown(name, md)
            if not src.strip() and not cell.get('outputs'): continue   # `#| default_exp x` alone
        cell['source'] = src
        cell.setdefault('metadata', {})['tags'] = sorted(tags)
        cells.append(cell)
    nb['cells'] = cells
    return nb


def stage(order:list[str]) -> Linker:
    "Writes the Sphinx project in `_proc/site/`"
    if STAGE.exists(): shutil.rmtree(STAGE)
    (STAGE/'_static').mkdir(parents=True)
    (STAGE/'conf.py').write_text(CONF, encoding='utf-8')
    (STAGE/'_static'/'fastmix.css').write_text(CSS, encoding='utf-8')
    linker = Linker(set(order))
    for name in order:
        nb = stage_notebook(NBS/f'{name}.ipynb', linker)
        if name == 'index':   # the sidebar: every other notebook, in file order
            toc = '```{toctree}\n:hidden:\n:maxdepth: 1\n\n' + '\n'.join(n for n in order if n != 'index') + '\n```'
            nb['cells'].append(dict(cell_type='markdown', metadata={}, source=toc, id='site-toc'))
        (STAGE/f'{name}.ipynb').write_text(json.dumps(nb, indent=1), encoding='utf-8')
    for rel in sorted(linker.files):
        dst = STAGE/'_repo'/rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/rel, dst)
    return linker


def highlight_modules():
    "`_docs/_code/fastmix/x.py.html`: each module, highlighted, a `#L-n` anchor per line (show_doc's source links)"
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    fmt = HtmlFormatter(linenos='inline', lineanchors='L', anchorlinenos=True, full=True, style='default')
    for py in sorted((ROOT/'fastmix').rglob('*.py')):
        rel = py.relative_to(ROOT).as_posix()
        fmt.title = rel
        dst = OUT/'_code'/f'{rel}.html'
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(highlight(py.read_text(encoding='utf-8'), PythonLexer(), fmt), encoding='utf-8')


def notebook_order() -> list[str]:
    "index first, then every notebook in file order (the order of nbdev's sidebar)"
    names = sorted(p.stem for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
    return ['index'] + [n for n in names if n != 'index']


def main(argv=None):
    p = argparse.ArgumentParser(prog='tools/build_docs.py', description=__doc__.split('\n\n')[0])
    p.add_argument('--verbose', action='store_true', help="Sphinx's full progress (by default: only its warnings and the last line)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    order = notebook_order()
    linker = stage(order)
    if linker.missing: sys.exit('Links to notebooks that do not exist:\n  ' + '\n  '.join(linker.missing))
    for d in (BUILD, OUT):
        if d.exists(): shutil.rmtree(d)
    # -W: every warning (a link to a missing page or heading, a bad toctree) fails the build; -E: no stale cache
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-W', '--keep-going', '-E', '-n',
           '-d', str(BUILD/'doctrees'), str(STAGE), str(BUILD/'html')] + ([] if a.verbose else ['-q'])
    r = subprocess.run(cmd, cwd=ROOT)
    if r.returncode: sys.exit(f'FAIL: Sphinx exited with {r.returncode} (its warnings are above).')
    shutil.move(BUILD/'html', OUT)
    highlight_modules()
    (OUT/'.nojekyll').touch()
    print(f'Built {len(order)} pages in {time.perf_counter() - t0:.0f} s: open {(OUT/"index.html").relative_to(ROOT)} '
          f'in a browser (or `python -m http.server -d _docs` and http://localhost:8000).')


if __name__ == '__main__': main()
