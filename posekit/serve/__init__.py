"""`posekit serve`: poses over HTTP with dynamic batching across concurrent requests.

    batcher.py  `Batcher`: images from many callers -> `estimate_batch` calls (standard library only)
    images.py   `decode_image`: an upload's bytes -> BGR image, with type, size and truncation checks
    schema.py   the answer's JSON, ``posekit.poses/1``
    app.py      `create_app(estimator, limits)` (FastAPI) and `serve(...)` (uvicorn): needs the
                `serve` extra, ``pip install 'posekit[serve]'``
    client.py   start a server subprocess on 127.0.0.1 and post images to it (tests, `bench --stage serve`)
"""
