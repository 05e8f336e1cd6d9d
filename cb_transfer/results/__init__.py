"""Result tables: read the runs (through their records, or what mmengine wrote), pair plain and
+CB arms, report the gains."""
from ..experiment import identify
from .runs import Run, collect_runs, read_run_dirs
from .stats import Gain, gain, paired_gain, summarize, unpaired_gain
from .table import FORMATS, REFERENCES, Row, Table, build_table

__all__ = ['Run', 'collect_runs', 'read_run_dirs', 'identify', 'Gain', 'gain', 'paired_gain',
           'summarize', 'unpaired_gain', 'FORMATS', 'REFERENCES', 'Row', 'Table', 'build_table']
