"""Lambda entry point of the management API: Mangum around modelbay's registry app."""

from mangum import Mangum

from modelbay.api.app import create_registry_app

app = create_registry_app()
handler = Mangum(app, lifespan="off")
