"Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which cannot be installed here)."
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text(encoding='utf-8'))
directive = re.compile(r'^\s*#\s*\|')

def text(src): return ''.join(src) if isinstance(src, list) else src

parts = []
for cell in nb['cells']:
    src = text(cell['source'])
    lines = src.splitlines()
    if any(directive.match(l) and re.search(r'\b(hide|exporti?)\b', l) for l in lines): continue
    body = '\n'.join(l for l in lines if not directive.match(l)).strip()
    if not body: continue
    if cell['cell_type'] == 'markdown': parts.append(body)
    elif cell['cell_type'] == 'code':
        parts.append(f'```python\n{body}\n```')
        outs = [text(o.get('text', '')) for o in cell.get('outputs', []) if o.get('output_type') == 'stream' and o.get('name') == 'stdout']
        outs += [text(o['data']['text/plain']) for o in cell.get('outputs', [])
                 if o.get('output_type') in ('execute_result', 'display_data') and 'text/plain' in o.get('data', {})]
        if any(o.strip() for o in outs): parts.append('```\n' + ''.join(outs).strip() + '\n```')

readme = '<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n\n' + '\n\n'.join(parts) + '\n'
out = root/'README.md'
if '--check' in sys.argv:
    if out.read_text(encoding='utf-8') != readme: sys.exit('README.md is out of sync with nbs/index.ipynb: run `python .ci/make_readme.py`.')
else: out.write_text(readme, encoding='utf-8')
