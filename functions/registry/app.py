"""Lambda entry point of the management API: Mangum around modelbay's registry app."""

from mangum import Mangum

from modelbay.api.app import create_app
from modelbay.settings import Settings

app = create_app(Settings.from_env(), inference=False)
handler = Mangum(app, lifespan="off")
