"""Check the site `tools/build_docs.py` built in `_docs/`, in headless Chromium too: `python tools/check_docs.py`.

1. Pages: one page per notebook of `nbs/`, the sidebar in the notebooks' order, the search page and its index; no
   `#| ...` directive line shown in any page's code.
2. Links: every `href`/`src` of every page that stays inside the site points to a file that exists and, when it names
   a `#fragment`, to an element with that id. No link is left pointing to a `.ipynb`.
3. In a browser: Debian's `chromium` (`apt-get install -y chromium`) renders the home page and the Manifold Mixup page;
   their screenshots must not be blank (right of the sidebar, a share of dark "ink" pixels and a spread of grey levels
   that an empty page does not reach; checked against a blank page first, so the check is known to fail when it should);
   the rendered DOM must hold each page's title, and a search for "ManifoldMixup" must list the Manifold Mixup page.

Screenshots are written to `_proc/screenshots/` (`--shots DIR` for another folder): look at them.
Exits non-zero with one line per problem.
"""
from __future__ import annotations
import argparse, html, html.parser, json, re, shutil, subprocess, sys, tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SITE, NBS = ROOT/'_docs', ROOT/'nbs'
SHOTS = ['index', '05_manifold']   # the home page and the Manifold Mixup page
INK, MIN_INK, MAX_INK, MIN_STD = 160, 0.02, 0.60, 25.0   # luminance below INK counts as ink (text, code, figures)


class Page(html.parser.HTMLParser):
    "The ids and the links (href/src) of one html page"
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids,self.links = set(),[]
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name') if tag == 'a' else ('id',):
            if a.get(k): self.ids.add(a[k])
        for k in ('href', 'src'):
            if a.get(k) is not None: self.links.append((tag, a[k]))


def parse(path:Path) -> Page:
    p = Page(); p.feed(path.read_text(encoding='utf-8', errors='replace')); return p


def notebook_titles() -> dict:
    "notebook name -> its first markdown heading (the page's title)"
    out = {}
    for nb in sorted(NBS.glob('*.ipynb')):
        cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
        src = next(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
        out[nb.stem] = re.search(r'^#\s+(.+)$', src, re.M).group(1).strip()
    return out


def check_pages(problems:list) -> dict:
    titles = notebook_titles()
    for name in titles:
        if not (SITE/f'{name}.html').is_file(): problems.append(f'missing page: _docs/{name}.html (from nbs/{name}.ipynb)')
    for f in ('search.html', 'searchindex.js'):
        if not (SITE/f).is_file(): problems.append(f'missing: _docs/{f} (search)')
    for f in sorted(SITE.glob('*.html')):   # nbdev directives are for the notebooks, not for the reader
        code = ' '.join(re.sub(r'<[^>]+>', '', b) for b in re.findall(r'<pre[^>]*>(.*?)</pre>', f.read_text(encoding='utf-8'), re.S))
        if re.search(r'#\s*\|', html.unescape(code)): problems.append(f'{f.name}: shows a `#| ...` directive line in its code')
    if (SITE/'index.html').is_file():   # the sidebar lists the pages in the notebooks' order
        hrefs = [h for t,h in parse(SITE/'index.html').links if t == 'a']
        side = [h[:-5] for h in dict.fromkeys(hrefs) if re.fullmatch(r'[\w-]+\.html', h) and h[:-5] in titles]
        want = sorted(n for n in titles if n != 'index')
        if side != want: problems.append(f'sidebar order {side} is not the notebooks\' order {want}')
    return titles


def check_links(problems:list) -> int:
    pages,n = {},0
    def page(p):
        if p not in pages: pages[p] = parse(p)
        return pages[p]
    for f in sorted(SITE.rglob('*.html')):
        for tag,url in page(f).links:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(('data:', 'javascript:')): continue   # outside the site
            n += 1
            where = f'{f.relative_to(SITE)}: <{tag}> {url}'
            if parts.path.endswith('.ipynb'): problems.append(f'{where}: a link to a notebook, not to its page'); continue
            target = (f.parent/unquote(parts.path)).resolve() if parts.path else f
            if SITE.resolve() not in target.parents and target != SITE.resolve():
                problems.append(f'{where}: points outside the site'); continue
            if target.is_dir(): target = target/'index.html'
            if not target.is_file(): problems.append(f'{where}: no such file'); continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == '.html' and frag not in page(target).ids:
                problems.append(f'{where}: no element with id "{frag}" in {target.relative_to(SITE.resolve())}')
    return n


def find_chromium() -> str | None:
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'chrome'):
        if shutil.which(name): return shutil.which(name)
    return None


def chromium(exe:str, url:str, *args, timeout:int=90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as prof:
        cmd = [exe, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
               '--disable-extensions', f'--user-data-dir={prof}', *args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(exe:str, url:str, png:Path, size=(1280, 2000)):
    png.unlink(missing_ok=True)
    r = chromium(exe, url, f'--screenshot={png}', f'--window-size={size[0]},{size[1]}', '--virtual-time-budget=3000')
    if not png.is_file(): raise RuntimeError(f'chromium wrote no screenshot of {url}: {r.stderr.strip()[-500:]}')


def blankness(png:Path) -> tuple[float, float]:
    "(share of ink pixels, standard deviation of the grey levels) of a screenshot's content, right of the sidebar"
    from PIL import Image, ImageStat
    im = Image.open(png).convert('L')
    im = im.crop((int(im.width * 0.3), 0, im.width, im.height))   # the sidebar alone (about 1% ink) must not pass
    hist = im.histogram()
    return sum(hist[:INK]) / (im.width * im.height), ImageStat.Stat(im).stddev[0]


def not_blank(ink:float, std:float) -> bool: return MIN_INK <= ink <= MAX_INK and std >= MIN_STD


def check_browser(problems:list, titles:dict, shots:Path, exe:str):
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:   # the check itself: a blank page must be found blank
        blank = Path(d)/'blank.html'
        blank.write_text('<!doctype html><html><body></body></html>')
        screenshot(exe, blank.as_uri(), Path(d)/'blank.png')
        ink,std = blankness(Path(d)/'blank.png')
        if not_blank(ink, std): problems.append(f'the blank-page check is broken: an empty page gave ink {ink:.3f}, std {std:.1f}')
    for name in SHOTS:
        url,png = (SITE/f'{name}.html').as_uri(),shots/f'{name}.png'
        screenshot(exe, url, png)
        ink,std = blankness(png)
        ok = not_blank(ink, std)
        print(f'  {png.relative_to(ROOT) if ROOT in png.parents else png}: ink {ink:.1%} of pixels, grey-level std {std:.0f}'
              f' -> {"not blank" if ok else "BLANK"}')
        if not ok: problems.append(f'{name}.html looks blank in Chromium (ink {ink:.3f}, want {MIN_INK}-{MAX_INK}; std {std:.1f}, want >= {MIN_STD})')
        dom = chromium(exe, url, '--dump-dom', '--virtual-time-budget=3000').stdout
        if not re.search(rf'<h1[^>]*>\s*{re.escape(html.escape(titles[name], quote=False))}\s*<', dom):
            problems.append(f'{name}.html: the page Chromium rendered has no <h1> "{titles[name]}"')
    dom = chromium(exe, (SITE/'search.html').as_uri() + '?q=ManifoldMixup', '--dump-dom', '--virtual-time-budget=10000').stdout
    found = re.findall(r'href="([^"#?]+\.html)', dom.partition('id="search-results"')[2].partition('</article>')[0])
    if '05_manifold.html' not in found:
        problems.append(f'searching the site for "ManifoldMixup" in Chromium does not list 05_manifold.html (results: {found[:10]})')
    else: print(f'  search for "ManifoldMixup" in Chromium: {len(found)} results, 05_manifold.html among them')


def main(argv=None):
    p = argparse.ArgumentParser(prog='tools/check_docs.py', description=__doc__.split('\n\n')[0])
    p.add_argument('--shots', type=Path, default=ROOT/'_proc'/'screenshots', help='folder for the screenshots')
    p.add_argument('--no-browser', action='store_true', help='check pages and links only (no Chromium)')
    a = p.parse_args(argv)
    if not (SITE/'index.html').is_file(): sys.exit('FAIL: no _docs/index.html: build the site first, `python tools/build_docs.py`.')
    problems = []
    titles = check_pages(problems)
    n = check_links(problems)
    print(f'pages: {len(titles)} notebooks, {len(titles)} pages checked; links inside the site: {n} checked')
    if not a.no_browser:
        exe = find_chromium()
        if exe is None: problems.append('no Chromium found: install Debian\'s package, `apt-get install -y chromium` (as root)')
        else: check_browser(problems, titles, a.shots.resolve(), exe)
    if problems:
        print(f'FAIL: {len(problems)} problems in the site:', *problems, sep='\n  ', file=sys.stderr); sys.exit(1)
    print('site: 0 problems')


if __name__ == '__main__': main()
