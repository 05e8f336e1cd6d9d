"""The robustness stage of one run: its final checkpoint evaluated clean and under each
corruption and severity, on its own validation pipeline with :class:`SeededCorrupt` right after
the image is loaded (before resizing, as mmdet's robustness tool applies it). Nothing is trained.

Each finished evaluation is appended to ``<robustness work dir>/corruptions.jsonl`` at once, so
that a killed stage resumes where it stopped without repeating one; the summary (P, mPC, rPC)
goes into the stage's record, with the run.
"""
import copy
import json
import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from .corruptions import BENCHMARK, HELD_OUT
from .metrics import CLEAN, summarize

RESULTS = 'corruptions.jsonl'
# what each task's robustness is measured in
METRICS = {'mmseg': ('mIoU',), 'mmdet': ('coco/bbox_mAP', 'coco/segm_mAP')}


def evaluations(corruptions: Sequence[str], severities: Sequence[int]) -> List[Tuple[str, int]]:
    """Clean first, then each corruption at each severity."""
    return [(CLEAN, 0)] + [(c, s) for c in corruptions for s in severities]


def read_results(work_dir: Path) -> List[dict]:
    """The evaluations finished so far (a line cut short by a kill is left out)."""
    path = Path(work_dir) / RESULTS
    results = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return results


def _append(work_dir: Path, result: dict) -> None:
    with open(Path(work_dir) / RESULTS, 'a') as f:
        f.write(json.dumps(result) + '\n')
        f.flush()
        os.fsync(f.fileno())


def corrupted_pipeline(pipeline: list, corruption: str, severity: int) -> list:
    """The pipeline with the corruption right after the image is loaded."""
    pipeline = copy.deepcopy(list(pipeline))
    if corruption == CLEAN:
        return pipeline
    load = next((i for i, step in enumerate(pipeline)
                 if step.get('type', '').endswith('LoadImageFromFile')), None)
    if load is None:
        raise ValueError('the test pipeline has no LoadImageFromFile to corrupt after')
    pipeline.insert(load + 1, dict(type='cb_transfer.SeededCorrupt', corruption=corruption,
                                   severity=severity))
    return pipeline


def evaluate_robustness(cfg, checkpoint: str, work_dir: Path, corruptions: Sequence[str],
                        severities: Sequence[int], hooks: Sequence = ()) -> Dict[str, float]:
    """Evaluate ``checkpoint`` clean and under every corruption and severity not yet done.

    Args:
        cfg: The run's config (its test data loader and evaluator are used).
        work_dir: Where the results accumulate (``corruptions.jsonl``).
        hooks: mmengine hooks for the runner (progress: ``after_test_epoch`` once an
            evaluation).

    Returns:
        The summary over every evaluation: P, the mean under corruption and the relative one.
    """
    from mmengine.dist import barrier, get_rank
    from mmengine.logging import print_log
    from mmengine.runner import TestLoop

    from ..launch import build_runner
    unknown = set(corruptions) - set(BENCHMARK + HELD_OUT)
    if unknown:
        raise ValueError(f'unknown corruptions {sorted(unknown)}')
    done = {(r['corruption'], r['severity']) for r in read_results(work_dir)}
    planned = evaluations(corruptions, severities)
    pending = [e for e in planned if e not in done]
    print_log(f'robustness: {len(planned) - len(pending)} of {len(planned)} evaluations done '
              f'before; {len(pending)} to go', logger='current')
    if pending:
        # what Runner.test does, once for all the evaluations: its test loop built anew for
        # each corrupted pipeline (the model is built and its weights loaded once)
        cfg.load_from = checkpoint
        runner = build_runner(cfg)
        for hook in hooks:
            runner.register_hook(hook)
        runner.call_hook('before_run')
        runner.load_or_resume()
        for corruption, severity in pending:
            loader = copy.deepcopy(cfg.test_dataloader)
            loader['dataset']['pipeline'] = corrupted_pipeline(
                loader['dataset']['pipeline'], corruption, severity)
            runner._test_loop = TestLoop(runner, loader, cfg.test_evaluator)
            metrics = runner.test_loop.run()
            if get_rank() == 0:
                _append(work_dir, dict(corruption=corruption, severity=severity,
                                       metrics={k: float(v) for k, v in metrics.items()}))
        runner.call_hook('after_run')
    barrier()  # every rank reads what rank 0 wrote
    return summarize(read_results(work_dir), METRICS.get(cfg.get('default_scope'), ()))
