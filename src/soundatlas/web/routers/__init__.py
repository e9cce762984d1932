"""One router per resource of the API, each a module with an ``APIRouter`` named ``router``:
atlas, samples, labels, models, sound, files, export, events, and pages (the page and /docs).

A router looks things up through ``soundatlas.web.deps``, answers errors with
``soundatlas.web.responses.api_error`` and never imports ``soundatlas.web.app`` nor another
router; ``soundatlas.web.app.ROUTERS`` lists the routers the app includes."""
