"""Robustness records (``robustness.json``): aggregates, Markdown tables and plots.

A record is what :class:`mmdat.robustness.CorruptionBenchmark` writes::

    {"format": 1, "settings": {...}, "results": {"clean": {"0": {metric: value}},
     "<corruption>": {"<severity>": {metric: value}}}, "seconds": {...}, "summary": {...}}

The summary is always recomputed from ``results``, so a record of a run that was killed midway
reports exactly the cells that finished.

Every table and summary names the source of its numbers (:func:`source_description`). A mean
corruption error is called ``mCE`` only when it is comparable with published ImageNet-C mCEs: all
15 corruptions x 5 severities, from the released ImageNet-C files or the exact on-the-fly protocol;
otherwise the summary holds it as ``mean_CE`` with a label (``mCE_label``) that says why it is not.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

from mmdat.datasets.transforms.corruption import BENCHMARK_CORRUPTIONS, CORRUPTIONS
from mmdat.evaluation.robustness import SEVERITIES, headline_metrics, summarize_metric

__all__ = ['RESULT_FILE', 'atomic_write_json', 'load_record', 'source_description', 'summarize_record',
           'markdown_table', 'plot_record', 'write_report', 'compare_markdown', 'plot_comparison']

RESULT_FILE = 'robustness.json'
CLEAN = 'clean'
PathLike = Union[str, os.PathLike]


def atomic_write_json(path: PathLike, data: dict) -> None:
    """Write ``data`` to ``path`` so that a reader (or a killed run) never sees a partial file."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False))
    os.replace(tmp, path)


def load_record(path: PathLike) -> dict:
    """Read and check a ``robustness.json``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no robustness record at {path}')
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f'{path} is not valid JSON: {e}') from e
    if not isinstance(record, dict) or record.get('format') != 1 or not isinstance(record.get('results'), dict):
        raise ValueError(f'{path} is not a robustness record written by mmdat (format 1)')
    record.setdefault('seconds', {})
    record.setdefault('settings', {})
    return record


# What each source of cells is, and whether its mean CE can be compared with published mCEs
_SOURCES = {
    'imagenet-c': ('released ImageNet-C files, as stored (224x224, no Resize/CenterCrop)', True,
                   'the released ImageNet-C'),
    'imagenet-c-resized': ("released ImageNet-C files through easyrobust's Resize(256, bicubic) + CenterCrop(224), "
                           "as DAT's published mCE", True, "easyrobust's / DAT's evaluation of the released files"),
    'imagenet-c-protocol': ('exact ImageNet-C protocol on the fly (Resize 256 -> CenterCrop 224 -> corrupt -> JPEG 85; '
                            "imagecorruptions differs from Hendrycks' code in a few corruptions, docs/robustness.md)",
                            True, 'the ImageNet-C protocol on the fly'),
    'on-the-fly': ('on-the-fly corruption at the original resolution, before the test pipeline resizes (not '
                   'the ImageNet-C protocol)', False, 'corruption at original resolution'),
    'copy': ('copies written by make_corrupted.py (corruption at the original resolution, not the ImageNet-C '
             'protocol)', False, 'make_corrupted.py copies at original resolution'),
}


def source_description(settings: dict) -> dict:
    """Where a record's numbers come from: ``kind``, ``description`` and ``mce_comparable``.

    ``mce_comparable``: a complete mean CE from this source can be called mCE (released ImageNet-C
    files, as stored or resized as DAT did, or the exact on-the-fly protocol); corruption at the
    original resolution and copies of it cannot.
    """
    kind = settings.get('source') or 'on-the-fly'
    if kind == 'imagenet-c' and settings.get('imagenet_c_resize'):
        kind = 'imagenet-c-resized'
    description, comparable, short = _SOURCES.get(kind, (f'unknown source {kind!r}', False, f'source {kind!r}'))
    if settings.get('legacy_bgr'):
        description += '; BGR array corrupted as mmdet does'
    return dict(kind=kind, description=description, short=short, mce_comparable=comparable)


def _mce_labels(source: dict, count: int) -> tuple[bool, str, str]:
    """(is it an mCE?, label of the mean CE, label of the relative mean CE), by source and count."""
    total = len(BENCHMARK_CORRUPTIONS)
    if source['mce_comparable'] and count == total:
        return True, 'mCE', 'relative mCE'
    why = [] if count == total else [f'{count} of {total} corruptions']
    if not source['mce_comparable']:
        why.append(source['short'])
    why = ', '.join(why)
    return (False, f'mean CE ({why}; not comparable with published mCE)',
            f'relative mean CE ({why}; not comparable with published relative mCE)')


def _ordered(corruptions) -> list[str]:
    known = [c for c in CORRUPTIONS if c in corruptions]
    return known + sorted(c for c in corruptions if c not in CORRUPTIONS)


def summarize_record(record: dict) -> dict:
    """``{metric: aggregates}`` for the record's headline metrics (see
    :func:`mmdat.evaluation.robustness.summarize_metric`), from the cells that ran."""
    results = record['results']
    clean = results.get(CLEAN, {}).get('0', {})
    keys = []
    for row in [clean] + [m for c, r in results.items() for m in r.values()]:
        keys += [k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                 and k not in keys]
    task = record.get('settings', {}).get('task')
    source = source_description(record.get('settings', {}))
    summary = {}
    for key in headline_metrics(keys):
        cells = {c: {int(s): m[key] for s, m in row.items() if key in m}
                 for c, row in results.items() if c != CLEAN}
        s = summarize_metric(key, cells, clean.get(key),
                             classification=task == 'classification' and key.endswith('top1'))
        s['source'] = source['description']
        if 'mCE' in s:  # an mCE by name only where it is one: complete and from a comparable source
            mean, count = s.pop('mCE'), s.pop('mCE_corruptions')
            relative, relative_count = s.pop('relative_mCE', None), s.pop('relative_mCE_corruptions', 0)
            is_mce, label, relative_label = _mce_labels(source, count)
            s.update(mean_CE=mean, mean_CE_corruptions=count, mCE_label=label, mCE_comparable=is_mce,
                     relative_mean_CE=relative, relative_mean_CE_corruptions=relative_count,
                     relative_mCE_label=_mce_labels(source, relative_count)[2])
            if is_mce:
                s['mCE'] = mean
            if _mce_labels(source, relative_count)[0] and relative is not None:
                s['relative_mCE'] = relative
        summary[key] = s
    return summary


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return '–' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.{digits}f}'


def _aggregate_line(s: dict) -> str:
    pc = s['pc']
    cells = f'{pc["cells"]} of {len(BENCHMARK_CORRUPTIONS) * len(SEVERITIES)} benchmark cells'
    parts = [f'P (clean) **{_fmt(s["clean"])}**', f'mPC **{_fmt(pc["mPC"])}** ({cells})',
             f'rPC **{_fmt(pc["rPC"], 1)} %**']
    if 'pc_all' in s:
        parts.append(f'mPC over all {s["pc_all"]["cells"]} cells {_fmt(s["pc_all"]["mPC"])} '
                     f'(rPC {_fmt(s["pc_all"]["rPC"], 1)} %)')
    if 'mCE_label' in s:
        n, total = s['mean_CE_corruptions'], len(BENCHMARK_CORRUPTIONS)
        if n:
            value = f'**{_fmt(s["mean_CE"])}**' if s['mCE_comparable'] else _fmt(s['mean_CE'])
            parts.append(f'{s["mCE_label"]} {value} ({n}/{total})')
        else:
            parts.append('mCE – (needs severities 1-5 of benchmark corruptions)')
        if s.get('relative_mean_CE') is not None:
            parts.append(f'{s["relative_mCE_label"]} {_fmt(s["relative_mean_CE"])} '
                         f'({s["relative_mean_CE_corruptions"]}/{total}; AlexNet clean error 43.48 %, to verify)')
    if not pc['complete'] and pc['cells']:
        parts.append('partial: only the cells that ran are averaged')
    return ' · '.join(parts)


def markdown_table(record: dict, summary: Optional[dict] = None) -> str:
    """Tables (rows: corruptions, columns: severities, mean and CE) plus the aggregate lines."""
    summary = summary or summarize_record(record)
    settings = record.get('settings', {})
    lines = []
    if settings:
        lines.append(f'{settings.get("task", "?")} · checkpoint `{settings.get("checkpoint")}` · '
                     f'{settings.get("preprocessing", "")}')
        lines.append('')
    lines += [f'Source of the numbers: {source_description(settings)["description"]}.', '']
    for key, s in summary.items():
        severities = sorted({sev for row in s['rows'].values() for sev in row})
        ce = 'CE' in s
        head = ['corruption'] + [f's{sev}' for sev in severities] + ['mean'] + (['CE', 'rel. CE'] if ce else [])
        lines += [f'**{key}** (%)', '', '| ' + ' | '.join(head) + ' |',
                  '|' + '---|' + '---:|' * (len(head) - 1)]
        lines.append('| clean | ' + ' | '.join([''] * len(severities)) + (' | ' if severities else '')
                     + _fmt(s['clean']) + (' | | |' if ce else ' |'))
        for c in _ordered(s['rows']):
            row = s['rows'][c]
            vals = [_fmt(row.get(sev)) for sev in severities] + [_fmt(s['means'][c])]
            if ce:
                vals += [_fmt(s['CE'].get(c)), _fmt(s.get('relative_CE', {}).get(c))]
            lines.append(f'| {c} | ' + ' | '.join(vals) + ' |')
        lines += ['', _aggregate_line(s), '']
    return '\n'.join(lines).rstrip() + '\n'


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_record(record: dict, path: PathLike, summary: Optional[dict] = None) -> Path:
    """Metric against severity per corruption (clean value as reference), one panel per metric."""
    plt = _pyplot()
    summary = summary or summarize_record(record)
    fig, axes = plt.subplots(1, max(len(summary), 1), figsize=(6.5 * max(len(summary), 1), 4.5), squeeze=False)
    colours = plt.get_cmap('tab20')
    for ax, (key, s) in zip(axes[0], summary.items()):
        for i, c in enumerate(_ordered(s['rows'])):
            row = s['rows'][c]
            xs = ([0] if s['clean'] is not None else []) + sorted(row)
            ys = ([s['clean']] if s['clean'] is not None else []) + [row[x] for x in sorted(row)]
            ax.plot(xs, ys, marker='o', ms=3, lw=1, color=colours(i % 20), label=c)
        if s['clean'] is not None:
            ax.axhline(s['clean'], ls='--', color='k', lw=1, label='clean')
        ax.set(xlabel='severity (0 = clean)', ylabel=f'{key} (%)', title=key, xticks=range(6))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(record: dict, json_path: PathLike) -> str:
    """Write ``<json stem>.md`` and ``.png`` next to the record; returns the Markdown."""
    json_path = Path(json_path)
    summary = summarize_record(record)
    table = markdown_table(record, summary)
    json_path.with_suffix('.md').write_text(table)
    plot_record(record, json_path.with_suffix('.png'), summary)
    return table


# ----------------------------------------------------------------------------- side by side
def _common_metrics(summaries: Sequence[dict]) -> list[str]:
    keys = [k for k in summaries[0] if all(k in s for s in summaries[1:])]
    if not keys:
        raise ValueError('the records share no metric: '
                         + '; '.join(', '.join(s) or '(none)' for s in summaries))
    return keys


def compare_markdown(records: Sequence[dict], names: Sequence[str]) -> str:
    """Several records side by side: per-corruption means and aggregates, one column per model."""
    summaries = [summarize_record(r) for r in records]
    lines = [f'{n}: {source_description(r.get("settings", {}))["description"]}; '
             f'{r.get("settings", {}).get("preprocessing", "")}' for n, r in zip(names, records)]
    lines.append('')
    for key in _common_metrics(summaries):
        ss = [s[key] for s in summaries]
        lines += [f'**{key}** (%); corruption rows: mean over the severities that ran', '',
                  '| | ' + ' | '.join(names) + ' |', '|---|' + '---:|' * len(names)]
        for c in _ordered({c for s in ss for c in s['rows']}):
            sev_sets = {tuple(sorted(s['rows'].get(c, {}))) for s in ss}
            mark = ' *' if len(sev_sets) > 1 else ''
            lines.append(f'| {c}{mark} | ' + ' | '.join(_fmt(s['means'].get(c)) for s in ss) + ' |')
        lines.append('| **P (clean)** | ' + ' | '.join(_fmt(s['clean']) for s in ss) + ' |')
        lines.append('| **mPC** | ' + ' | '.join(f'{_fmt(s["pc"]["mPC"])} ({s["pc"]["cells"]} cells)'
                                                for s in ss) + ' |')
        lines.append('| **rPC (%)** | ' + ' | '.join(_fmt(s['pc']['rPC'], 1) for s in ss) + ' |')
        if all('mCE_label' in s for s in ss):
            total = len(BENCHMARK_CORRUPTIONS)
            for value, count, label, name in (('mean_CE', 'mean_CE_corruptions', 'mCE_label', 'mCE'),
                                              ('relative_mean_CE', 'relative_mean_CE_corruptions',
                                               'relative_mCE_label', 'relative mCE')):
                labels = {s[label] for s in ss}
                head = f'**{name}**' if labels == {name} else f'**{" / ".join(sorted(labels))}**'
                lines.append(f'| {head} | ' + ' | '.join(f'{_fmt(s.get(value))} ({s[count]}/{total})'
                                                         for s in ss) + ' |')
        if any(len({tuple(sorted(s['rows'].get(c, {}))) for s in ss}) > 1
               for c in {c for s in ss for c in s['rows']}):
            lines.append('\n\\* the models ran different severities of this corruption')
        lines.append('')
    return '\n'.join(lines).rstrip() + '\n'


def plot_comparison(records: Sequence[dict], names: Sequence[str], path: PathLike) -> Path:
    """One figure: per metric, the mean over corruptions against severity (top) and each
    corruption's mean over severities (bottom), one colour per model."""
    plt = _pyplot()
    summaries = [summarize_record(r) for r in records]
    keys = _common_metrics(summaries)
    fig, axes = plt.subplots(2, len(keys), figsize=(7 * len(keys), 8), squeeze=False)
    colours = plt.get_cmap('tab10')
    for col, key in enumerate(keys):
        ss = [s[key] for s in summaries]
        top, bottom = axes[0][col], axes[1][col]
        for i, (name, s) in enumerate(zip(names, ss)):
            xs = sorted({sev for row in s['rows'].values() for sev in row})
            ys = [sum(row[x] for row in s['rows'].values() if x in row)
                  / sum(1 for row in s['rows'].values() if x in row) for x in xs]
            if s['clean'] is not None:
                xs, ys = [0] + xs, [s['clean']] + ys
                top.axhline(s['clean'], ls='--', lw=1, color=colours(i))
            top.plot(xs, ys, marker='o', color=colours(i), label=name)
        top.set(xlabel='severity (0 = clean)', ylabel=f'{key} (%)', xticks=range(6),
                title=f'{key}: mean over corruptions')
        top.grid(alpha=0.3)
        top.legend()
        corruptions = _ordered({c for s in ss for c in s['rows']})
        width = 0.8 / len(ss)
        for i, (name, s) in enumerate(zip(names, ss)):
            bottom.bar([j + i * width for j in range(len(corruptions))],
                       [s['means'].get(c, math.nan) for c in corruptions], width, color=colours(i), label=name)
        bottom.set_xticks([j + 0.4 - width / 2 for j in range(len(corruptions))])
        bottom.set_xticklabels(corruptions, rotation=60, ha='right', fontsize=8)
        bottom.set(ylabel=f'{key} (%)', title=f'{key}: mean over severities')
        bottom.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
