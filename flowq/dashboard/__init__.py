"""The web dashboard (``flowq -A app dashboard``): workers, queues, recent and stuck
workflows, and each workflow drawn with its nodes' live states.

Needs the ``dashboard`` extra (``pip install 'flowq[dashboard]'``: Starlette and uvicorn).
Its pages are one HTML shell with hand-written JavaScript and CSS shipped in
``static/``: nothing is fetched from elsewhere at run time, and nothing is built at
install time.
"""
