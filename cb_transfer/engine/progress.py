"""Progress of a suite run, one line at a time."""
import time

from mmengine.hooks import Hook

from ..registry import HOOKS


@HOOKS.register_module()
class SuiteProgressHook(Hook):
    """One line of progress per ``interval`` iterations: which run of how many, iteration, loss,
    the last metric, and the time left for the run and the suite."""

    priority = 'LOW'

    def __init__(self, label: str, interval: int = 20, suite_start: float = 0.0,
                 iters_before: int = 0, iters_total: int = 0) -> None:
        self.label, self.interval = label, interval
        self.suite_start, self.iters_before, self.iters_total = suite_start, iters_before, iters_total
        self.metric = ''

    def _eta(self, seconds: float) -> str:
        return time.strftime('%H:%M:%S', time.gmtime(max(seconds, 0)))

    def before_train(self, runner) -> None:
        self.start, self.start_iter = time.time(), runner.iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        if done % self.interval and done != runner.max_iters:
            return
        rate = (time.time() - self.start) / max(done - self.start_iter, 1)
        suite_left = (self.iters_total - self.iters_before - done) * rate
        loss = float(outputs['loss']) if outputs and 'loss' in outputs else float('nan')
        print(f'{self.label}: iter {done}/{runner.max_iters} loss {loss:.3f}{self.metric} | '
              f'run left {self._eta((runner.max_iters - done) * rate)}, '
              f'suite left ~{self._eta(suite_left)}', flush=True)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if metrics:
            key = next((k for k in ('mIoU', 'coco/bbox_mAP', 'coco/segm_mAP') if k in metrics),
                       next(iter(metrics)))
            self.metric = f', {key} {float(metrics[key]):.3f}'
            print(f'{self.label}: evaluated at iter {runner.iter}{self.metric}', flush=True)
