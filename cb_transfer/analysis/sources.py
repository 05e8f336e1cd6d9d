"""What the attention analysis reads: checkpoints, turned into ``cb_transfer.ViT`` backbones, and
images, turned into the backbone's inputs.

A checkpoint is any file :func:`cb_transfer.models.load_pretrained` reads: a timm/DeiT file, an
upstream classifier (mmpretrain), a downstream mmseg or mmdet model. Where the checkpoint carries
its config (mmengine writes it into ``meta``), the backbone is built from that config; a bare
timm/DeiT file needs the architecture (``arch``, inferred for DeiT-Ti/-S/-B). A suite's work dirs
give every finished run's last checkpoint, grouped into arms as the tables group them.
"""
import math
from types import SimpleNamespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import Config

from ..models import ViT
from ..models.pretrained import read_checkpoint, state_dict_of, load_pretrained

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
# timm's DeiT archs by width (12 blocks, 16x16 patches)
DEIT_BY_WIDTH = {192: 'deit_tiny_patch16_224', 384: 'deit_small_patch16_224',
                 768: 'deit_base_patch16_224'}


@dataclass
class Subject:
    """One checkpoint to analyse, and how to feed it."""
    checkpoint: str
    backbone: dict                   # cb_transfer.ViT keyword arguments
    task: str = '-'
    experiment: str = ''             # the row it belongs to, as shown
    key: str = ''                    # what pairs arms into a row (the tables' fingerprint)
    seed: Optional[int] = None
    pair: Optional[int] = None       # the pretraining pair the run belongs to
    config: Optional[dict] = None    # the run's config, for its images and normalisation
    size: Optional[Tuple[int, int]] = None

    @property
    def cb(self) -> bool:
        return bool(self.backbone.get('cb', False))

    @property
    def arm(self) -> str:
        """What the arm changes, as the tables name it ('plain', '+CB(mlp)', '+reg4', ...)."""
        from ..experiment import arm_label, arm_options
        return arm_label(arm_options(dict(model=dict(backbone=self.backbone))))


class NotAViT(ValueError):
    """The checkpoint holds no ViT backbone this analysis can read."""


def _backbone_from_config(cfg: dict, path: str) -> dict:
    backbone = dict((cfg.get('model') or {}).get('backbone') or {})
    if backbone.get('type') not in ('cb_transfer.ViT', 'ViT'):
        raise NotAViT(f"'{path}': its config's backbone is {backbone.get('type')!r}, not "
                      'cb_transfer.ViT; the attention analysis reads cb_transfer.ViT and timm '
                      'ViT/DeiT checkpoints')
    backbone.pop('type')
    backbone['init_cfg'] = None
    backbone['out_type'] = 'featmap'
    backbone.pop('final_norm', None)
    backbone.pop('with_cp', None)
    return backbone


def _backbone_from_weights(state: Dict[str, torch.Tensor], path: str,
                           arch: Optional[str], cb: bool) -> dict:
    qkv = state.get('blocks.0.attn.qkv.weight')
    proj = state.get('patch_embed.proj.weight')
    if qkv is None or proj is None or 'pos_embed' not in state:
        found = ', '.join(sorted(state)[:6])
        raise NotAViT(f"'{path}' is not a ViT checkpoint: it has no blocks.0.attn.qkv.weight, "
                      f'patch_embed.proj.weight and pos_embed (found: {found}, ...)')
    width, patch = proj.shape[0], proj.shape[-1]
    depth = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    if arch is None:
        arch = DEIT_BY_WIDTH.get(width) if depth == 12 and patch == 16 else None
        if arch is None:
            raise NotAViT(f"'{path}': a ViT {width} wide, {depth} blocks deep with {patch}x{patch} "
                          'patches is not a standard DeiT; name its timm architecture (--arch)')
    # the position rows: a square grid after the prefix tokens that have rows (the class token,
    # registers: all of them; DINOv2's registers: none) or none (no_embed_class, DeiT III)
    rows = state['pos_embed'].shape[1]
    prefix = int('cls_token' in state) + (state['reg_token'].shape[1] if 'reg_token' in state
                                          else 0)
    grid = next((math.isqrt(rows - k) for k in dict.fromkeys((prefix, 1, 0))
                 if rows > k and math.isqrt(rows - k) ** 2 == rows - k), None)
    if grid is None:
        raise NotAViT(f"'{path}': its pos_embed has {rows} rows, no square grid of patches with "
                      f'or without rows for its {prefix} prefix tokens')
    return dict(arch=arch, img_size=grid * patch, cb=cb, init_cfg=None)


def subject_from_checkpoint(path: str, arch: Optional[str] = None,
                            cb: Optional[bool] = None) -> Subject:
    """A checkpoint file as a subject: built from the config it carries, or (a timm/DeiT file)
    from its weights' shapes and ``arch``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint '{path}' not found")
    raw = read_checkpoint(path)
    text = (raw.get('meta') or {}).get('cfg') if isinstance(raw, dict) else None
    if isinstance(text, str):
        cfg = Config.fromstring(text, '.py').to_dict()
        backbone = _backbone_from_config(cfg, path)
        if cb is not None:
            backbone['cb'] = cb
        from ..experiment import identify
        info = identify(cfg)
        return Subject(path, backbone, task=info['task'], experiment=_experiment_label(info),
                       key=info['experiment'], seed=info['seed'], config=cfg)
    try:
        state = state_dict_of(raw, path, None)
    except ValueError as err:
        raise NotAViT(f"'{path}' is not a ViT checkpoint ({err})") from err
    backbone = _backbone_from_weights(state, path, arch, bool(cb))
    return Subject(path, backbone, experiment=Path(path).name, key=str(path))


def _experiment_label(info: dict) -> str:
    from ..results.format import row_label
    return f"{info['task']}: " + row_label(SimpleNamespace(**{**info, 'arm': ''}), metric=False,
                                              protocol=True)


def subjects_from_runs(runs: Sequence) -> Tuple[List[Subject], List[str]]:
    """Each finished run's final checkpoint (:class:`cb_transfer.results.runs.Run`), labelled by
    the row it belongs to; and the runs left out, with why."""
    from ..run_dir import RunDir
    subjects, skipped = [], []
    for run in runs:
        if not run.complete or not run.final_checkpoint:
            skipped.append(f'{run.path}: not finished, no final checkpoint')
            continue
        cfg = RunDir(run.path).config()
        subjects.append(Subject(run.final_checkpoint,
                                _backbone_from_config(cfg, run.final_checkpoint),
                                task=run.task, experiment=_experiment_label(vars(run)),
                                key=run.experiment, seed=run.seed, pair=run.pair, config=cfg))
    return subjects, skipped


def subjects_from_work_dirs(dirs: Sequence[str]) -> Tuple[List[Subject], List[str]]:
    """Every finished run's final checkpoint under ``dirs`` (see :func:`subjects_from_runs`)."""
    from ..results.runs import collect_runs
    runs, _ = collect_runs(dirs)
    return subjects_from_runs(runs)


def build_backbone(subject: Subject) -> ViT:
    """The subject's backbone with its checkpoint's weights, loaded strictly."""
    model = ViT(**subject.backbone)
    load_pretrained(model, subject.checkpoint)
    return model.eval()


def default_size(subject: Subject) -> Tuple[int, int]:
    """(H, W) the images are resized to: the backbone's input size, or for detection the test
    pipeline's resize scale (e.g. 1333x800 becomes 800x1333; the backbone pads it to whole
    patches, as it does in the detector)."""
    size = subject.backbone.get('img_size', 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if subject.task == 'detection' and subject.config:
        pipeline = (subject.config.get('test_dataloader') or {}).get('dataset', {}).get(
            'pipeline') or []
        scale = next((t.get('scale') for t in pipeline if t.get('type') == 'Resize'), None)
        if scale:
            width, height = max(scale), min(scale)
    return height, width


def normalisation(subject: Subject) -> dict:
    pre = ((subject.config or {}).get('model') or {}).get('data_preprocessor') or {}
    pre = {**((subject.config or {}).get('data_preprocessor') or {}), **pre}
    return dict(mean=pre.get('mean', IMAGENET_MEAN), std=pre.get('std', IMAGENET_STD),
                to_rgb=bool(pre.get('bgr_to_rgb', pre.get('to_rgb', True))))


def image_files(folder: str, limit: Optional[int] = None) -> List[str]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder '{folder}' not found")
    files = sorted(str(p) for p in root.rglob('*') if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under '{folder}'")
    return files[:limit] if limit else files


def dataset_images(config: dict, limit: Optional[int] = None) -> List[str]:
    """The image files of a config's validation split, through the data set class it names."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(config.get('default_scope', 'mmengine'))
    dataset_cfg = dict((config.get('val_dataloader') or {}).get('dataset') or {})
    dataset_cfg['pipeline'] = []
    dataset_cfg['lazy_init'] = False
    dataset = DATASETS.build(dataset_cfg)
    count = len(dataset) if not limit else min(limit, len(dataset))
    return [dataset.get_data_info(i)['img_path'] for i in range(count)]


def load_images(files: Sequence[str], size: Tuple[int, int],
                norm: dict) -> Iterator[Tuple[str, torch.Tensor]]:
    """Each file as a (1, 3, H, W) input, resized to ``size`` and normalised."""
    mean = np.array(norm['mean'], np.float32)
    std = np.array(norm['std'], np.float32)
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image '{path}' (missing, not an image, or corrupt)")
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        if norm['to_rgb']:
            image = image[..., ::-1]
        image = (image.astype(np.float32) - mean) / std
        yield path, torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


@dataclass
class Group:
    """The subjects of one row: its arms over pairs and seeds."""
    experiment: str
    subjects: List[Subject] = field(default_factory=list)


def group(subjects: Sequence[Subject]) -> List[Group]:
    """The subjects by row; rows whose labels coincide are numbered apart."""
    groups: Dict[str, Group] = {}
    for subject in subjects:
        groups.setdefault(subject.key or subject.experiment,
                          Group(subject.experiment)).subjects.append(subject)
    seen: Dict[str, int] = {}
    for g in groups.values():
        seen[g.experiment] = seen.get(g.experiment, 0) + 1
        if seen[g.experiment] > 1:
            g.experiment += f' #{seen[g.experiment]}'
    return list(groups.values())
