from flowq import Flowq

app = Flowq("reports")


@app.task
def count_words(text: str) -> int:
    return len(text.split())


@app.task
def total(counts: list[int]) -> int:
    return sum(counts)
