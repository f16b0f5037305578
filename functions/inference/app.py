"""Lambda entry point of inference: Mangum around modelbay's inference app.

Built at import time, in the init phase: the app, its engine, and the models
named by MODELBAY_PREWARM (loaded by ``include_inference``) are ready before
the first request is billed.
"""

from mangum import Mangum

from modelbay.api.app import create_inference_app

app = create_inference_app()
app.state.inline_inference = True  # one request at a time per sandbox: no thread hop
handler = Mangum(app, lifespan="off")
