"""TraX server: MLT for the VOT toolkit (vot-toolkit 0.9, vot-trax 4).

The VOT toolkit starts this module (``trackers.ini``: ``protocol = traxpython``,
``command = tracker_wrappers.vot_trax``) and talks TraX to it over stdin/stdout:

- Handshake first, then the model: the TraX hello goes out ~0.3 s after Python starts (only
  ``trax`` is imported before it); torch and the weights load afterwards, while the toolkit waits for
  the reply to its first ``initialize``. That wait is bounded by ``timeout`` in ``trackers.ini``.
- Regions in: rectangles, and polygons, which become the axis-aligned bounding box of their corners
  (min/max of the x and y coordinates; not got10k's area-preserving box). Regions out: rectangles,
  with the per-frame ``confidence`` property = MLT's ``object_presence_score`` (the response
  probability at the new state).
- Images in: file paths, colour channel; read as RGB (grey frames expanded to 3 channels).
- One target per session; the client may re-``initialize`` at any time (supervised experiments
  re-initialise after a failure in the same process).
- Anything that goes wrong (model load, a malformed or unsupported request, an unreadable image,
  an exception while tracking) is written to stderr with its reason and traceback, and the session
  is ended with a TraX ``quit`` carrying the reason, so the toolkit reports "Server terminated the
  session: <reason>" instead of hanging or saying only "Unable to connect". The exit status is
  then 1. A client ``quit`` or a closed connection ends the server with status 0.

Parameter set, weights and device: ``--params NAME`` (any of ``mlt_plugin.params.parameter_set_names()``:
default, mt, mt_ft, paper*, lite*, fast), ``--weights FILE``,
``--device cpu|cuda|cuda:N``; or the environment variables ``MLT_PARAMS``, ``MLT_WEIGHTS``,
``MLT_DEVICE`` (``env_MLT_PARAMS = mt`` in ``trackers.ini``). The flags win over the environment.
Nothing is printed to stdout (it carries the protocol); messages go to stderr, which the toolkit
keeps in its log (``logs/`` in the workspace when a run fails).
"""
import argparse
import os
import sys
import time
import traceback

_STARTED = time.perf_counter()
PREFIX = "[MLT TraX]"


class RequestError(Exception):
    """A request this server cannot serve; the reason is sent to the client with the TraX quit."""


def log(message: str):
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tracker_wrappers.vot_trax",
        description="MLT as a TraX server. Started by a TraX client (the VOT toolkit: `vot test MLT`, "
        "`vot evaluate MLT`), not by hand.",
    )
    # Sets named, not listed by parameter_set_names(): importing mlt_plugin loads torch, after the handshake.
    parser.add_argument("--params", default=os.environ.get("MLT_PARAMS") or "default",
                        help="parameter set (parameter/mlt/): default, mt, mt_ft, paper, paper_mt, "
                        "paper_mt_ft, lite, lite_mt, lite_mt_ft, fast (default: $MLT_PARAMS or 'default')")
    parser.add_argument("--weights", default=os.environ.get("MLT_WEIGHTS") or None,
                        help="weights file (default: $MLT_WEIGHTS or the shipped weights)")
    parser.add_argument("--device", default=os.environ.get("MLT_DEVICE") or None,
                        help="cpu, cuda, cuda:N (default: $MLT_DEVICE, else cuda when available)")
    return parser.parse_args(argv)


def region_to_box(region):
    """A TraX region as [x, y, w, h]: rectangles as they are, polygons as their corners' bounding box."""
    from trax import Region

    kind = region.type
    if kind == Region.RECTANGLE:
        box = [float(v) for v in region.bounds()]
    elif kind == Region.POLYGON:
        points = [region.get(i) for i in range(region.size())]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    else:
        raise RequestError(f"unsupported region type '{kind}': MLT takes rectangles and polygons")
    if not all(v == v for v in box) or box[2] <= 0 or box[3] <= 0:  # v == v is False for NaN
        raise RequestError(f"degenerate initial region {box}: width and height must be > 0")
    return box


def image_path(request):
    """The path of the colour image of a request."""
    from trax import FileImage

    images = request.image or {}
    image = images.get("color")
    if image is None:
        raise RequestError(f"request has no colour image (channels: {sorted(images)})")
    if not isinstance(image, FileImage):
        raise RequestError(f"unsupported image kind {type(image).__name__}: MLT takes image file paths")
    return image.path()


def load_tracker(args):
    """The MLT tracker for the chosen parameter set (imports torch: after the handshake)."""
    from mlt_plugin import build_tracker

    return build_tracker(args.params, weights=args.weights, device=args.device)


def read_image(path):
    from mlt_plugin.sequences import read_image as read

    try:
        return read(path)
    except ValueError as err:
        raise RequestError(str(err)) from err


def _quit(server, reason=None):
    """End the session, telling the client why; never raises (the client may be gone)."""
    try:
        server.quit(reason=reason)
    except Exception as err:  # noqa: BLE001 - the connection may already be closed
        log(f"(could not send the quit message: {err})")


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def serve(args) -> int:
    try:
        import trax
        from trax import Image, ImageChannel, Rectangle, Region, TraxException, TraxStatus
    except ImportError as err:
        log(f"cannot import the TraX bindings ({err}): install them with `pip install vot-trax` "
            "(vot-toolkit installs it too)")
        return 2

    if not any(k in os.environ for k in ("TRAX", "TRAX_SOCKET", "TRAX_IN")) and sys.stdin.isatty():
        log("this is a TraX server and needs a TraX client on stdin/stdout: run it through the VOT "
            "toolkit (`vot test MLT` in a workspace whose trackers.ini has the [MLT] entry; see `mlt vot-setup`)")
        return 2
    try:
        server = trax.Server([Region.RECTANGLE, Region.POLYGON], [Image.PATH], [ImageChannel.COLOR],
                             tracker_name=f"MLT-{args.params}", tracker_family="MLT",
                             tracker_description=f"MLT visual tracker, parameter set '{args.params}'")
    except TraxException as err:
        log(f"cannot open the TraX connection: {err}")
        return 2
    log(f"handshake done {time.perf_counter() - _STARTED:.2f} s after start; loading parameter set '{args.params}'")

    try:
        tracker = load_tracker(args)
    except Exception as err:  # noqa: BLE001 - any start-up failure is reported to the client
        log("MLT failed to start:\n" + traceback.format_exc())
        _quit(server, _one_line(f"MLT failed to start: {type(err).__name__}: {err}"))
        return 1
    log(f"ready {time.perf_counter() - _STARTED:.2f} s after start (device {tracker.device})")

    initialized = False
    frame = 0
    while True:
        try:
            request = server.wait()
        except TraxException as err:
            message = str(err)
            if _client_gone():
                log(f"client disconnected ({message}); exiting")
                return 0
            log(f"malformed request from the client: {message}")
            _quit(server, _one_line(f"malformed request: {message}"))
            return 1

        if request.type == TraxStatus.QUIT:
            log("client quit; exiting")
            _quit(server)
            return 0
        try:
            if request.type == TraxStatus.INITIALIZE:
                objects = request.objects or []
                if len(objects) != 1:
                    raise RequestError(f"MLT tracks one target per session, got {len(objects)} objects to initialize")
                box = region_to_box(objects[0][0])
                tracker.initialize(read_image(image_path(request)), box)
                initialized, frame = True, 1
                server.status([(Rectangle.create(*box), {"confidence": 1.0})])
            elif request.type == TraxStatus.FRAME:
                if not initialized:
                    raise RequestError("frame request before any initialize request")
                if request.objects:
                    raise RequestError("new objects in a frame request: MLT tracks one target per session")
                image = read_image(image_path(request))
                frame += 1
                out = tracker.track(image)
                x, y, w, h = out["target_bbox"]
                server.status([(Rectangle.create(x, y, w, h), {"confidence": out["object_presence_score"]})])
            else:
                raise RequestError(f"unsupported request type '{request.type}'")
        except TraxException as err:
            log(f"cannot reply to the client: {err}")
            _quit(server, _one_line(f"cannot reply: {err}"))
            return 0 if _client_gone() else 1
        except RequestError as err:
            log(f"unsupported request: {err}")
            _quit(server, _one_line(f"unsupported request: {err}"))
            return 1
        except Exception as err:  # noqa: BLE001 - report any tracking failure instead of hanging
            log(f"MLT failed on frame {frame} of the session:\n" + traceback.format_exc())
            _quit(server, _one_line(f"MLT failed on frame {frame}: {type(err).__name__}: {err}"))
            return 1


def _client_gone() -> bool:
    """True when the client's end of the connection is closed (stdin at end of file)."""
    if "TRAX_SOCKET" in os.environ:
        return False
    import select

    fd = int(os.environ.get("TRAX_IN", 0)) if os.environ.get("TRAX_IN", "").isdigit() else 0
    try:
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable) and os.read(fd, 1) == b""
    except (OSError, ValueError):
        return True


def main(argv=None) -> int:
    sys.stdout = sys.stderr  # stdout carries TraX messages: no Python print may interleave with them
    args = parse_args(argv)
    try:
        return serve(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception:  # noqa: BLE001 - last resort: never die silently
        log("unexpected error:\n" + traceback.format_exc())
        return 1


if __name__ == "__main__":
    sys.exit(main())
