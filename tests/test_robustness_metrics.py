"""Robustness arithmetic (CE, mCE, relative mCE, P/mPC/rPC) against hand-computed values, and the
reports (tables, plots, side by side) built from records."""
from __future__ import annotations

import json

import pytest

from mmdat.evaluation import (ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, corruption_errors, headline_metrics,
                              mean_corruption_error, performance_under_corruption, relative_corruption_errors,
                              summarize_metric)
from mmdat.robustness import compare_markdown, load_record, markdown_table, plot_comparison, write_report
from mmdat.robustness.report import atomic_write_json, summarize_record


def test_ce_and_relative_ce_by_hand():
    errors = {'gaussian_noise': {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8, 5: 0.9},
              'brightness': {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}}
    ce = corruption_errors(errors)
    # CE = mean error / AlexNet mean error: 0.7 / 0.886428 and 0.3 / 0.564592
    assert ce['gaussian_noise'] == pytest.approx(78.9686246, abs=1e-6)
    assert ce['brightness'] == pytest.approx(53.1357157, abs=1e-6)
    mce, n = mean_corruption_error(ce)
    assert n == 2 and mce == pytest.approx((78.9686246 + 53.1357157) / 2, abs=1e-6)
    # relative CE = (0.7 - 0.2) / (0.886428 - 0.43478) and (0.3 - 0.2) / (0.564592 - 0.43478)
    rel = relative_corruption_errors(errors, clean_error=0.2)
    assert rel['gaussian_noise'] == pytest.approx(110.7056823, abs=1e-6)
    assert rel['brightness'] == pytest.approx(77.0344806, abs=1e-6)
    assert ALEXNET_CLEAN_ERROR == pytest.approx(1 - 0.56522)


def test_ce_needs_all_five_severities_and_an_alexnet_reference():
    errors = {'gaussian_noise': {1: 0.5, 2: 0.6},            # incomplete row
              'speckle_noise': {s: 0.5 for s in range(1, 6)}}  # held-out: no AlexNet number
    assert corruption_errors(errors) == {}
    assert mean_corruption_error({}) == (None, 0)


def test_alexnet_itself_scores_100():
    errors = {c: {s: e for s in range(1, 6)} for c, e in ALEXNET_ERRORS.items()}
    mce, n = mean_corruption_error(corruption_errors(errors))
    assert n == 15 and mce == pytest.approx(100.0)
    rel, _ = mean_corruption_error(relative_corruption_errors(errors, ALEXNET_CLEAN_ERROR))
    assert rel == pytest.approx(100.0)


def test_mpc_averages_only_cells_that_ran():
    values = {'gaussian_noise': {0: 99.0, 1: 30.0, 3: 10.0}, 'fog': {2: 20.0}, 'saturate': {1: 35.0}}
    pc = performance_under_corruption(values, clean=40.0)
    # (30 + 10 + 20) / 3 cells (severity 0 and held-out saturate ignored), never / 75 with zeros
    assert pc == dict(P=40.0, mPC=20.0, rPC=50.0, cells=3, complete=False)
    assert performance_under_corruption(values, clean=None)['rPC'] is None
    assert performance_under_corruption({}, clean=40.0) == dict(P=40.0, mPC=None, rPC=None, cells=0,
                                                               complete=False)
    full = {c: {s: 10.0 for s in range(1, 6)} for c in ALEXNET_ERRORS}
    assert performance_under_corruption(full, clean=20.0)['complete'] is True


def test_headline_metrics_of_each_family():
    assert headline_metrics(['accuracy/top1', 'accuracy/top5']) == ['accuracy/top1']
    assert headline_metrics(['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_s']) == [
        'coco/bbox_mAP', 'coco/segm_mAP']
    assert headline_metrics(['aAcc', 'mIoU', 'mAcc']) == ['mIoU']
    assert headline_metrics(['pascal_voc/mAP', 'pascal_voc/AP50']) == ['pascal_voc/mAP']


def test_detection_ap_is_reported_in_percent():
    s = summarize_metric('coco/bbox_mAP', {'fog': {1: 0.2, 2: 0.1}}, clean=0.4, classification=False)
    assert s['clean'] == pytest.approx(40.0) and s['means']['fog'] == pytest.approx(15.0)
    assert s['pc']['rPC'] == pytest.approx(37.5) and 'mCE' not in s


def _record(task='classification', key='accuracy/top1', scale=1.0):
    cells = {'gaussian_noise': {'1': 60.0, '2': 40.0}, 'contrast': {'1': 70.0}}
    results = {'clean': {'0': {key: 80.0 * scale, 'other': 1.0}}}
    for c, row in cells.items():
        results[c] = {s: {key: v * scale} for s, v in row.items()}
    return dict(format=1, settings=dict(task=task, checkpoint='x.pth', preprocessing='on the fly'),
                results=results, seconds={})


def test_record_summary_table_and_plot(tmp_path):
    record = _record()
    s = summarize_record(record)['accuracy/top1']
    assert s['pc']['mPC'] == pytest.approx(170 / 3) and s['pc']['rPC'] == pytest.approx(100 * 170 / 3 / 80)
    assert 'mCE' not in s and s['mean_CE'] is None and s['mean_CE_corruptions'] == 0  # no complete row
    table = markdown_table(record)
    assert '| gaussian_noise | 60.00 | 40.00 | 50.00 | – | – |' in table
    assert '| contrast | 70.00 | – | 70.00 | – | – |' in table  # not run: a dash, never 0
    assert 'P (clean) **80.00**' in table and 'mPC **56.67** (3 of 75 benchmark cells)' in table
    assert 'partial' in table
    assert 'Source of the numbers: on-the-fly corruption at the original resolution' in table
    path = tmp_path / 'robustness.json'
    atomic_write_json(path, record)
    assert load_record(path)['results'] == record['results']
    assert write_report(load_record(path), path) == table
    assert (tmp_path / 'robustness.md').read_text() == table
    assert (tmp_path / 'robustness.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_side_by_side(tmp_path):
    plain, dat = _record(), _record()
    dat['results']['gaussian_noise']['1']['accuracy/top1'] = 64.0
    table = compare_markdown([plain, dat], ['plain', 'DAT'])
    assert '| gaussian_noise | 50.00 | 52.00 |' in table
    assert '| **P (clean)** | 80.00 | 80.00 |' in table
    assert '| **mPC** | 56.67 (3 cells) | 58.00 (3 cells) |' in table
    png = plot_comparison([plain, dat], ['plain', 'DAT'], tmp_path / 'cmp.png')
    assert png.read_bytes()[:4] == b'\x89PNG'
    with pytest.raises(ValueError, match='share no metric'):
        compare_markdown([plain, _record('segmentation', key='mIoU')], ['a', 'b'])


def test_bad_records(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_record(tmp_path / 'missing.json')
    (tmp_path / 'bad.json').write_text('{"results": 1')
    with pytest.raises(ValueError, match='not valid JSON'):
        load_record(tmp_path / 'bad.json')
    (tmp_path / 'other.json').write_text(json.dumps({'a': 1}))
    with pytest.raises(ValueError, match='not a robustness record'):
        load_record(tmp_path / 'other.json')


def _full_record(source: str, corruptions=tuple(ALEXNET_ERRORS), **settings) -> dict:
    """AlexNet's errors at every severity of ``corruptions`` and clean, from ``source``."""
    results = {'clean': {'0': {'accuracy/top1': 100.0 * (1 - ALEXNET_CLEAN_ERROR)}}}
    for c in corruptions:
        results[c] = {str(s): {'accuracy/top1': 100.0 * (1 - ALEXNET_ERRORS[c])} for s in range(1, 6)}
    return dict(format=1, settings=dict(task='classification', source=source, **settings), results=results,
                seconds={})


@pytest.mark.parametrize('source, settings, comparable, words', [
    ('imagenet-c', {}, True, 'released ImageNet-C files, as stored'),
    ('imagenet-c', dict(imagenet_c_resize=True), True, "released ImageNet-C files through easyrobust's Resize"),
    ('imagenet-c-protocol', {}, True, 'exact ImageNet-C protocol on the fly'),
    ('on-the-fly', {}, False, 'on-the-fly corruption at the original resolution'),
    ('copy', {}, False, 'copies written by make_corrupted.py'),
])
def test_every_summary_and_table_names_its_source(source, settings, comparable, words):
    record = _full_record(source, **settings)
    s = summarize_record(record)['accuracy/top1']
    assert words in s['source']
    assert s['mean_CE'] == pytest.approx(100.0) and s['mean_CE_corruptions'] == 15
    assert s['relative_mean_CE'] == pytest.approx(100.0) and s['relative_mean_CE_corruptions'] == 15
    assert s['mCE_comparable'] is comparable
    table = markdown_table(record)
    assert f'Source of the numbers: {words}' in table
    if comparable:  # an mCE by name, in the JSON summary and the table
        assert s['mCE'] == pytest.approx(100.0) and s['mCE_label'] == 'mCE'
        assert 'relative_mCE' in s and s['relative_mCE_label'] == 'relative mCE'
        assert 'mCE **100.00** (15/15)' in table and 'relative mCE ' in table
    else:  # the same number, under a label that says it is not one
        assert 'mCE' not in s and 'relative_mCE' not in s
        assert s['mCE_label'].startswith('mean CE (') and 'not comparable with published mCE' in s['mCE_label']
        assert 'not comparable with published relative mCE' in s['relative_mCE_label']
        assert 'mCE **' not in table and 'not comparable with published mCE) 100.00 (15/15)' in table


def test_incomplete_mce_is_labelled_with_its_count_for_mce_and_relative_mce():
    record = _full_record('imagenet-c', corruptions=list(ALEXNET_ERRORS)[:14])
    s = summarize_record(record)['accuracy/top1']
    assert 'mCE' not in s and 'relative_mCE' not in s
    assert s['mCE_label'] == 'mean CE (14 of 15 corruptions; not comparable with published mCE)'
    assert s['relative_mCE_label'].startswith('relative mean CE (14 of 15 corruptions;')
    table = markdown_table(record)
    assert '(14/15)' in table and '(14/15; AlexNet clean error' in table


def test_side_by_side_names_each_source_and_labels_mixed_mce():
    released, fly = _full_record('imagenet-c'), _full_record('on-the-fly')
    table = compare_markdown([released, released], ['a', 'b'])
    assert '| **mCE** | 100.00 (15/15) | 100.00 (15/15) |' in table
    assert '| **relative mCE** | 100.00 (15/15) | 100.00 (15/15) |' in table
    table = compare_markdown([released, fly], ['released', 'fly'])
    assert 'released: released ImageNet-C files' in table and 'fly: on-the-fly corruption at the original' in table
    assert '| **mCE** |' not in table
    assert '| **mCE / mean CE (corruption at original resolution; not comparable with published mCE)** |' in table


def test_old_records_without_a_source_read_as_original_resolution():
    record = _full_record('on-the-fly')
    del record['settings']['source']
    s = summarize_record(record)['accuracy/top1']
    assert 'mCE' not in s and 'original resolution' in s['source']
