"""Lambda entry point of inference: Mangum around modelbay's inference app.

Everything happens at import time, in the init phase, so the first billed
request is warm. The models named by MODELBAY_PREWARM start downloading and
loading before FastAPI is even imported: the S3 download and onnxruntime's
session build overlap the ~0.5 s of framework imports instead of following them.
"""

from modelbay.engine import Engine
from modelbay.settings import Settings
from modelbay.storage import open_store

settings = Settings.from_env()
store = open_store(settings.store_url, settings)
engine = Engine(store, settings)
engine.prewarm_in_background()

# imported after the prewarm has started, on purpose
from mangum import Mangum  # noqa: E402

from modelbay.api.app import create_app  # noqa: E402

# inline: one request at a time per sandbox, so the engine runs on the loop (no thread hop)
app = create_app(settings, store, engine=engine, inline=True, management=False)
engine.wait_prewarm()  # end init with the models loaded (a failed prewarm is logged, not fatal)
handler = Mangum(app, lifespan="off")
