from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from flowq import chord
from reports.tasks import app as flowq_app
from reports.tasks import count_words, total

api = FastAPI()


class Documents(BaseModel):
    texts: list[str]


@api.post("/reports", status_code=202)
def start_report(documents: Documents) -> dict[str, str]:
    """Count the words of every text in parallel, then add them up: a chord."""
    result = chord([count_words.s(text) for text in documents.texts], total.s()).delay()
    return {"id": result.id}


@api.get("/reports/{report_id}")
def report_state(report_id: str) -> dict[str, Any]:
    """PENDING until the chord's body has run, then SUCCESS with the total."""
    result = flowq_app.AsyncResult(report_id)
    state: dict[str, Any] = {"id": report_id, "state": result.state}
    if result.successful():
        state["words"] = result.result
    elif result.failed():
        state["error"] = repr(result.result)
    return state
