"""The report stage: the comparison report (pipeline.report) of the job runs so far in this job's experiment,
this job included (RUNNING while it is written, so listed after the ranked FINISHED runs), logged as the stage's
artifacts. Registered last, so it runs after every stage it reports on."""
from __future__ import annotations

from pipeline.job import Job
from pipeline.report import write_report
from pipeline.stages.base import StageResult, register_stage


@register_stage("report")
class ReportStage:
    def run(self, job: Job) -> StageResult:
        store = job.tracking
        out = job.stage_dir(self.name)
        written = write_report(store.client, job.conf.tracking.experiment, out)
        return StageResult(
            metrics={"pngs": float(len(written) - 1)},
            summary=f"report.html and {len(written) - 1} PNG(s) over experiment '{job.conf.tracking.experiment}'",
        )
