"""Training-loop additions: ``ExactResumeHook`` (registered in ``cb_transfer``'s hook registry)
and the choice of the checkpoint a run resumes from."""
from .checkpoints import find_resumable_checkpoint
from .exact_resume import ExactResumeHook

__all__ = ['ExactResumeHook', 'find_resumable_checkpoint']
