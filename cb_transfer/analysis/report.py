"""Run the attention analysis over subjects, and write what it found: JSON (per checkpoint, layer
and head), a Markdown summary (per row and layer, each arm beside the control) and figures."""
import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..experiment import arm_order
from ..results.plot import arm_styles, save_figure
from .attention import STATISTICS, AttentionRecorder
from .sources import (Subject, build_backbone, dataset_images, default_size, group, image_files,
                      load_images, normalisation)

DEFINITIONS = {
    'entropy': 'the paper\'s measure: mean over all queries of H(attention row) / log N, N the '
               'number of keys (prefix tokens: class token, registers; and patches); 1 is '
               'uniform attention',
    'gap': 'mean over queries of log N - H(attention row), in nats: the distance from uniform',
    'distance': 'mean attention distance in pixels between patch centres, patch queries and '
                'keys only (prefix tokens left out, each row renormalised over the patches)',
    'nmi': 'I(query; key) / H(key), with queries equally likely: 0 when every query attends '
           'alike (as CB\'s uniform attention does), 1 when each query picks its own key',
}


def analyse(subjects: Sequence[Subject], images: Optional[str] = None, max_images: int = 8,
            size: Optional[Tuple[int, int]] = None, progress: bool = True) -> dict:
    """The statistics of every subject, over ``max_images`` images: from the folder ``images``,
    or else the validation split of each subject's own config."""
    from tqdm import tqdm
    results = []
    files_by_data: Dict[str, List[str]] = {}
    for row in group(subjects):  # rows whose labels coincide are numbered apart
        for subject in row.subjects:
            subject.experiment = row.experiment
    for subject in subjects:
        model = build_backbone(subject)
        shape = tuple(size) if size else default_size(subject)
        if images:
            files = image_files(images, max_images)
        elif subject.config:  # the runs of one row (and often of one task) share a data set
            key = json.dumps([subject.config.get('default_scope'),
                              (subject.config.get('val_dataloader') or {}).get('dataset')],
                             sort_keys=True, default=str)
            if key not in files_by_data:
                files_by_data[key] = dataset_images(subject.config, max_images)
            files = files_by_data[key]
        else:
            raise ValueError(f"'{subject.checkpoint}' carries no config to take images from; "
                             'give a folder of images (--images)')
        recorder = AttentionRecorder(model)
        with recorder.recording():
            for _, image in tqdm(load_images(files, shape, normalisation(subject)),
                                 total=len(files), desc=Path(subject.checkpoint).name,
                                 disable=not progress, leave=False):
                recorder(image)
        means = recorder.stats.means()
        results.append(dict(
            checkpoint=subject.checkpoint, experiment=subject.experiment, key=subject.key,
            task=subject.task, arm=subject.arm, cb=subject.cb, seed=subject.seed,
            pair=subject.pair,
            arch=subject.backbone.get('arch'), images=recorder.stats.images, size=list(shape),
            tokens=recorder.grid[0] * recorder.grid[1] + recorder.prefix,
            prefix_tokens=recorder.prefix,
            uniform_distance=recorder.uniform_distance(),
            layers=[{name: means[name][layer] for name in STATISTICS}
                    for layer in range(recorder.stats.num_layers)]))
    return dict(definitions=DEFINITIONS, checkpoints=results)


TASK_ORDER = {'classification': 0, 'segmentation': 1, 'detection': 2}


def _experiments(entries: List[dict]) -> List[str]:
    """The rows in the tables' order: upstream first, then segmentation, detection."""
    first = {}
    for entry in entries:
        first.setdefault(entry['experiment'], TASK_ORDER.get(entry['task'], 3))
    return sorted(first, key=lambda e: (first[e], e))


def _head_means(entry: dict, name: str) -> List[float]:
    """Per layer, the mean over heads."""
    return [statistics.fmean(layer[name]) for layer in entry['layers']]


def _count(entries: List[dict]) -> str:
    pairs = {e['pair'] for e in entries if e.get('pair') is not None}
    text = f'{len(entries)} checkpoint{"s" * (len(entries) != 1)}'
    return text + (f' of {len(pairs)} pair{"s" * (len(pairs) != 1)}' if pairs else '')


def _cell(values: List[float], digits: int) -> str:
    if not values:
        return ''
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}'


def _per_pair(entries: List[dict], name: str, layer: int) -> List[float]:
    """The statistic of a layer (mean over heads) per pretraining pair, averaged over the pair's
    seeds; a checkpoint of no pair counts as its own."""
    by_pair: Dict[object, List[float]] = {}
    for index, entry in enumerate(entries):
        unit = entry.get('pair') if entry.get('pair') is not None else ('checkpoint', index)
        by_pair.setdefault(unit, []).append(_head_means(entry, name)[layer])
    return [statistics.fmean(values) for values in by_pair.values()]


def _arms(entries: List[dict]) -> List[str]:
    """The arms of a row's checkpoints, the control (plain) first."""
    return sorted({e['arm'] for e in entries}, key=arm_order)


def summary_markdown(results: dict) -> str:
    """Per row and layer: each statistic for each arm (the control first), the mean over heads,
    averaged over each pretraining pair's seeds, then mean ± sample std over pairs."""
    entries = results['checkpoints']
    lines = ['Attention statistics, per layer (mean over heads and over each pretraining pair\'s '
             'fine-tuning seeds; mean ± std over pairs, or over checkpoints where they belong to '
             'no pair; pairs and checkpoints per arm in the heading). Definitions:', '']
    lines += [f'- **{k}**: {v}' for k, v in results['definitions'].items()]
    for experiment in _experiments(entries):
        rows = [e for e in entries if e['experiment'] == experiment]
        arms = {arm: [e for e in rows if e['arm'] == arm] for arm in _arms(rows)}
        sample = rows[0]
        tokens = ', '.join(f'{arm} {e["tokens"]}' for arm, e in
                           ((arm, runs[0]) for arm, runs in arms.items()))
        head = [f'{name} {arm}' for name in ('entropy', 'distance (px)', 'NMI') for arm in arms]
        lines += ['', f'**{experiment}**: {sample["images"]} images at '
                  f'{sample["size"][0]}x{sample["size"][1]} (tokens: {tokens}; uniform '
                  f'attention: entropy 1, distance {sample["uniform_distance"]:.1f} px, NMI 0); '
                  + '; '.join(f'{arm}: {_count(runs)}' for arm, runs in arms.items()), '',
                  '| layer | ' + ' | '.join(head) + ' |', '|---' * (len(head) + 1) + '|']
        for layer in range(len(sample['layers'])):
            cells = []
            for name, digits in (('entropy', 3), ('distance', 1), ('nmi', 3)):
                for arm in arms:
                    cells.append(_cell(_per_pair(arms[arm], name, layer), digits))
            lines.append(f'| {layer} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot(results: dict, path: Path) -> List[Path]:
    """One row of panels per experiment: normalised entropy, distance and NMI by layer, every
    head of every checkpoint a point (the arms side by side), the uniform value a line.
    Written as PNG and PDF."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    entries = results['checkpoints']
    experiments = _experiments(entries)
    panels = (('entropy', 'normalised entropy H / log N', lambda e: 1.0),
              ('distance', 'mean attention distance (px)', lambda e: e['uniform_distance']),
              ('nmi', 'query dependence (NMI)', lambda e: 0.0))
    fig, axes = plt.subplots(len(experiments), 3, figsize=(10, 2.9 * len(experiments)),
                             squeeze=False)
    for row, experiment in enumerate(experiments):
        rows = [e for e in entries if e['experiment'] == experiment]
        arms = _arms(rows)
        styles = arm_styles(arms)
        offsets = dict(zip(arms, [0.0] if len(arms) == 1 else
                           [-0.2 + 0.4 * i / (len(arms) - 1) for i in range(len(arms))]))
        for col, (name, label, uniform) in enumerate(panels):
            ax = axes[row][col]
            for arm, style in styles.items():
                xs, ys = [], []
                for entry in (e for e in rows if e['arm'] == arm):
                    for layer, values in enumerate(entry['layers']):
                        xs += [layer + offsets[arm]] * len(values[name])
                        ys += values[name]
                if xs:
                    ax.scatter(xs, ys, s=14, alpha=0.7, color=style['color'],
                               marker=style['marker'], label=f'{arm} (each head)')
            ax.axhline(uniform(rows[0]), color='black', linestyle='--', linewidth=0.8,
                       label='uniform attention')
            ax.set_xlabel('layer')
            ax.set_ylabel(label, fontsize=9)
            ax.set_xticks(range(len(rows[0]['layers'])))
            if col == 0:
                ax.set_title(experiment, fontsize=9, loc='left')
            if row == 0 and col == 2:
                ax.legend(fontsize=7)
    return save_figure(fig, str(path), dpi=150)


def write_outputs(results: dict, out_dir: Path) -> Dict[str, Path]:
    """attention.json, attention.md and attention.png/.pdf in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {'attention.json': out_dir / 'attention.json',
               'attention.md': out_dir / 'attention.md'}
    written['attention.json'].write_text(json.dumps(results, indent=1))
    written['attention.md'].write_text(summary_markdown(results))
    for figure in plot(results, out_dir / 'attention'):
        written[figure.name] = figure
    return written
