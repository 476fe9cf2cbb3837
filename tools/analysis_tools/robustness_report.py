"""Robustness records side by side (e.g. plain vs DAT): one Markdown table and one plot.

    python tools/analysis_tools/robustness_report.py A/robustness.json B/robustness.json \
        [--names plain DAT] [--out-dir DIR]

With one record: its own table and plot (as tools/test.py --report).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mmdat.robustness import compare_markdown, load_record, plot_comparison, write_report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('records', nargs='+', help='robustness.json files written by tools/test.py')
    parser.add_argument('--names', nargs='+', help='column names (default: the parent folder names)')
    parser.add_argument('--out-dir', help='where robustness_compare.md/.png go (default: the current folder)')
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.records):
        parser.error(f'{len(args.names)} names for {len(args.records)} records')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    paths = [Path(p) for p in args.records]
    records = [load_record(p) for p in paths]
    if len(records) == 1:
        print(write_report(records[0], paths[0]))
        return
    names = args.names or [p.resolve().parent.name for p in paths]
    if len(set(names)) != len(names):
        names = [f'{n} ({i})' for i, n in enumerate(names, 1)]
    out_dir = Path(args.out_dir or '.')
    out_dir.mkdir(parents=True, exist_ok=True)
    table = compare_markdown(records, names)
    (out_dir / 'robustness_compare.md').write_text(table)
    plot = plot_comparison(records, names, out_dir / 'robustness_compare.png')
    print(table)
    print(f'written: {out_dir / "robustness_compare.md"}, {plot}')


if __name__ == '__main__':
    main()
