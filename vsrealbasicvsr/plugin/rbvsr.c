/*
 * core.rbvsr.Upscale: the BasicVSR family (RealBasicVSR, BasicVSR, IconVSR, BasicVSR++; x4, or x1
 * for restoration models) as a VapourSynth API-4 filter.
 *
 * This file owns everything VapourSynth: the argument checks, the temporal windows, the frame
 * requests, the output cache and the frame properties. The computation is done by the Python
 * engine (vsrealbasicvsr.engine.engine.Engine, contract in docs/DESIGN.md), called through the CPython
 * C API with the GIL held only around each engine call.
 *
 * Reading order: instance struct, Python helpers, window cache, window bounds, running the engine
 * on a window, getFrame, free, create, plugin init.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <dlfcn.h>
#endif

#include "VapourSynth4.h"

/* The largest output scale of a model (x4; BasicVSR++'s restoration models are x1): the clip
 * size check before the engine, which says the model's own scale, exists. */
#define MAX_SCALE 4
/* Windows kept by the filter itself: VapourSynth's own cache may evict a window's outputs before
 * they are asked for, and a window is expensive. Two covers a sequential pass with prefetching
 * (the frames at the end of one window are still being requested when the next is computed). */
#define CACHED_WINDOWS 2
#define MESSAGE_SIZE 1024

/* One computed window: the outputs of its non-context frames, or why it failed. */
typedef struct {
    int first;              /* clip index of the window's first frame; -1 for an empty slot */
    int count;              /* frames in the window, context excluded */
    const VSFrame **frames; /* count outputs, or NULL when the window failed */
    char *error;            /* the engine's message when the window failed, else NULL */
    unsigned long long last_use;
} Window;

typedef struct {
    VSNode *node;
    VSVideoInfo vi;         /* the output: the input's format, the model's scale times its size */
    int in_height;          /* rows of an input plane */
    int scene_split;
    int max_seq_len;        /* as resolved by the engine (never 0 here) */
    int overlap;            /* context frames on each side of a window */
    int cache_per_request;  /* what setLinearFilter says cacheFrame may add per request */
    PyObject *engine;
    PyThread_type_lock lock; /* guards windows[] and clock */
    Window windows[CACHED_WINDOWS];
    unsigned long long clock;
} UpscaleData;

/* ---------------------------------------------------------------------------------------------
 * Python helpers (call with the GIL held)
 */

/* Python has no public way to ask this from a C host that may not have loaded it: look the
 * symbol up instead of linking against it, so hosts without Python get a vs.Error, not a crash. */
static int python_is_running(void) {
#ifdef _WIN32
    return Py_IsInitialized();
#else
    int (*is_initialized)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    return is_initialized && is_initialized();
#endif
}

static int python_is_finalizing(void) {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* Takes the pending Python exception and writes "<prefix><message>" into buf. Messages that
 * start with "Upscale: " are the engine's own user-facing errors: they are kept as they are, less
 * that word, which the prefix supplies; any other exception is named by its type, and by its type
 * alone when its message is empty (e.g. the EOFError of an empty file). */
static void take_python_error(char *buf, size_t size, const char *prefix) {
    PyObject *exc = PyErr_GetRaisedException();
    const char *text = NULL;
    const char *type_name = NULL;
    PyObject *str = NULL, *type_str = NULL;

    if (exc) {
        str = PyObject_Str(exc);
        if (str)
            text = PyUnicode_AsUTF8(str);
        type_str = PyObject_GetAttrString((PyObject *)Py_TYPE(exc), "__name__");
        if (type_str)
            type_name = PyUnicode_AsUTF8(type_str);
        PyErr_Clear();
    }
    if (!text)
        text = "unknown Python error";
    if (!type_name)
        type_name = "Exception";

    if (strncmp(text, "Upscale: ", 9) == 0)
        snprintf(buf, size, "%s%s", prefix, text + 9);
    else if (!text[0])
        snprintf(buf, size, "%s%s", prefix, type_name);
    else
        snprintf(buf, size, "%s%s: %s", prefix, type_name, text);

    Py_XDECREF(type_str);
    Py_XDECREF(str);
    Py_XDECREF(exc);
}

/* Reads a resolved setting of the engine; on failure writes why into error. */
static int get_engine_int(PyObject *engine, const char *name, int min, int *value, char *error) {
    PyObject *attr = PyObject_GetAttrString(engine, name);
    long v = attr ? PyLong_AsLong(attr) : -1;
    Py_XDECREF(attr);
    if (PyErr_Occurred()) {
        take_python_error(error, MESSAGE_SIZE, "Upscale: engine: ");
        return 0;
    }
    if (v < min || v > 1000000) {
        snprintf(error, MESSAGE_SIZE, "Upscale: engine.%s is %ld, expected %d..1000000", name, v, min);
        return 0;
    }
    *value = (int)v;
    return 1;
}

/* The model's scale as the engine reads it, within what the clip size check allowed for. */
static int scale_fits(int scale, char *error) {
    if (scale <= MAX_SCALE)
        return 1;
    snprintf(error, MESSAGE_SIZE, "Upscale: engine.scale is %d, expected 1..%d", scale, MAX_SCALE);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Window cache
 */

static void clear_window(Window *w, const VSAPI *vsapi) {
    if (w->frames) {
        for (int i = 0; i < w->count; i++)
            vsapi->freeFrame(w->frames[i]);
        free(w->frames);
    }
    free(w->error);
    w->first = -1;
    w->count = 0;
    w->frames = NULL;
    w->error = NULL;
}

/* Looks up the window holding frame n. Returns 1 and sets *frame (a new reference) or copies the
 * window's error into error_buf; returns 0 when no cached window holds n. */
static int lookup_window(UpscaleData *d, int n, const VSFrame **frame, char *error_buf, const VSAPI *vsapi) {
    int found = 0;
    PyThread_acquire_lock(d->lock, WAIT_LOCK);
    for (int i = 0; i < CACHED_WINDOWS; i++) {
        Window *w = &d->windows[i];
        if (w->first < 0 || n < w->first || n >= w->first + w->count)
            continue;
        w->last_use = ++d->clock;
        if (w->frames)
            *frame = vsapi->addFrameRef(w->frames[n - w->first]);
        else
            snprintf(error_buf, MESSAGE_SIZE, "%s", w->error ? w->error : "the window failed (out of host memory)");
        found = 1;
        break;
    }
    PyThread_release_lock(d->lock);
    return found;
}

/* Stores a computed window (taking ownership of frames and error), evicting the least recently
 * used one. */
static void store_window(UpscaleData *d, int first, int count, const VSFrame **frames, char *error, const VSAPI *vsapi) {
    PyThread_acquire_lock(d->lock, WAIT_LOCK);
    Window *slot = &d->windows[0];
    for (int i = 1; i < CACHED_WINDOWS; i++)
        if (d->windows[i].last_use < slot->last_use)
            slot = &d->windows[i];
    clear_window(slot, vsapi);
    slot->first = first;
    slot->count = count;
    slot->frames = frames;
    slot->error = error;
    slot->last_use = ++d->clock;
    PyThread_release_lock(d->lock);
}

/* ---------------------------------------------------------------------------------------------
 * Window boundaries
 */

/* The frames requested for any output frame in the aligned window [start, end): the window and
 * the context on either side, clamped to the clip. Everything needed to find the (scene-split)
 * window of a frame and its context lies in this range. */
static void request_range(const UpscaleData *d, int n, int *lo, int *hi) {
    int start = n / d->max_seq_len * d->max_seq_len;
    int end = start + d->max_seq_len;
    if (end > d->vi.numFrames)
        end = d->vi.numFrames;
    *lo = start - d->overlap < 0 ? 0 : start - d->overlap;
    *hi = end + d->overlap > d->vi.numFrames ? d->vi.numFrames : end + d->overlap;
}

typedef struct {
    int first, end;         /* the window: frames [first, end) */
    int before, after;      /* context frames on either side */
} WindowBounds;

/* The window of frame n: its aligned window, split at scene cuts, with as much context as the
 * clip has within overlap frames, stopping at cuts. cuts[i] is 1 when frame lo + i starts a new
 * scene (_SceneChangePrev), so it and the frame before it are never computed together. Every
 * frame of a window finds the same bounds, whatever frame is asked for first. */
static WindowBounds find_window(const UpscaleData *d, int n, int lo, int hi, const char *cuts) {
    WindowBounds b;
    int start = n / d->max_seq_len * d->max_seq_len;
    int end = start + d->max_seq_len > d->vi.numFrames ? d->vi.numFrames : start + d->max_seq_len;
#define CUT(k) (cuts[(k) - lo])
    b.first = start;
    for (int k = start + 1; k <= n; k++)
        if (CUT(k))
            b.first = k;
    b.end = end;
    for (int k = n + 1; k < end; k++)
        if (CUT(k)) {
            b.end = k;
            break;
        }
    b.before = 0;
    while (b.before < d->overlap && b.first - b.before - 1 >= lo && !CUT(b.first - b.before))
        b.before++;
    b.after = 0;
    while (b.after < d->overlap && b.end + b.after < hi && !CUT(b.end + b.after))
        b.after++;
#undef CUT
    return b;
}

/* ---------------------------------------------------------------------------------------------
 * Running the engine on one window (GIL held)
 */

static PyObject *frame_to_python(const VSFrame *f, int height, const VSAPI *vsapi) {
    ptrdiff_t stride = vsapi->getStride(f, 0);
    PyObject *planes[3] = {NULL, NULL, NULL};
    for (int p = 0; p < 3; p++) {
        /* The engine may only read: the frame belongs to the source filter. */
        planes[p] = PyMemoryView_FromMemory((char *)vsapi->getReadPtr(f, p), (Py_ssize_t)stride * height, PyBUF_READ);
        if (!planes[p]) {
            Py_XDECREF(planes[0]);
            Py_XDECREF(planes[1]);
            return NULL;
        }
    }
    return Py_BuildValue("(NNNn)", planes[0], planes[1], planes[2], (Py_ssize_t)stride);
}

/* The input memoryviews point into VapourSynth frames that are freed after the window; releasing
 * them makes any reference the engine kept fail loudly instead of reading freed memory. */
static int release_views(PyObject *frames) {
    int ok = 1;
    PyObject *pending = PyErr_GetRaisedException();
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(frames); i++) {
        PyObject *item = PyList_GET_ITEM(frames, i);
        if (!item)
            continue;
        for (int p = 0; p < 3; p++) {
            PyObject *r = PyObject_CallMethod(PyTuple_GET_ITEM(item, p), "release", NULL);
            if (!r)
                ok = 0;
            Py_XDECREF(r);
        }
    }
    PyErr_Clear();
    PyErr_SetRaisedException(pending);
    return ok;
}

/* Copies one engine output into a new frame with the source frame's properties plus ours.
 * Returns NULL with a Python error pending, or with a message in error. */
static const VSFrame *output_frame(UpscaleData *d, PyObject *array, const VSFrame *src,
                                   int window_first, int window_size, int tile_w, int tile_h,
                                   char *error, VSCore *core, const VSAPI *vsapi) {
    Py_buffer view;
    if (PyObject_GetBuffer(array, &view, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    int bytes = d->vi.format.bytesPerSample;
    Py_ssize_t row = (Py_ssize_t)d->vi.width * bytes;
    Py_ssize_t plane_size = row * d->vi.height;
    if (view.len != 3 * plane_size) {
        snprintf(error, MESSAGE_SIZE, "engine returned %zd bytes for a frame, expected %zd (3 x %d x %d x %d bytes)",
                 view.len, 3 * plane_size, d->vi.height, d->vi.width, bytes);
        PyBuffer_Release(&view);
        return NULL;
    }

    VSFrame *dst = vsapi->newVideoFrame(&d->vi.format, d->vi.width, d->vi.height, src, core);
    for (int p = 0; p < 3; p++) {
        const uint8_t *srcp = (const uint8_t *)view.buf + p * plane_size;
        uint8_t *dstp = vsapi->getWritePtr(dst, p);
        ptrdiff_t stride = vsapi->getStride(dst, p);
        for (int y = 0; y < d->vi.height; y++)
            memcpy(dstp + y * stride, srcp + y * row, row);
    }
    PyBuffer_Release(&view);

    VSMap *props = vsapi->getFramePropertiesRW(dst);
    int64_t tile[2] = {tile_w, tile_h};
    vsapi->mapSetInt(props, "RBVSRWindow", window_first, maReplace);
    vsapi->mapSetInt(props, "RBVSRWindowSize", window_size, maReplace);
    vsapi->mapSetIntArray(props, "RBVSRTile", tile, 2);
    return dst;
}

/* Logs the engine's warnings (e.g. an out-of-memory retry) through VapourSynth. */
static void log_engine_messages(UpscaleData *d, VSCore *core, const VSAPI *vsapi) {
    PyObject *messages = PyObject_CallMethod(d->engine, "take_messages", NULL);
    PyObject *iter = messages ? PyObject_GetIter(messages) : NULL;
    PyObject *item;
    while (iter && (item = PyIter_Next(iter))) {
        const char *msg = PyUnicode_AsUTF8(item);
        if (msg)
            vsapi->logMessage(mtWarning, msg, core);
        Py_DECREF(item);
    }
    Py_XDECREF(iter);
    Py_XDECREF(messages);
    PyErr_Clear();
}

/* Runs the engine on window b and fills outputs (b.end - b.first frames, in order). inputs[i]
 * is the input frame lo + i. Returns 0 with a Python error pending or a message in error. */
static int run_engine(UpscaleData *d, WindowBounds b, int lo, const VSFrame **inputs, const VSFrame **outputs,
                      PyObject *frames, char *error, VSCore *core, const VSAPI *vsapi) {
    int count = b.end - b.first;
    int ctx_first = b.first - b.before;
    int done = 0;
    PyObject *item;

    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(frames); i++) {
        PyObject *f = frame_to_python(inputs[ctx_first + i - lo], d->in_height, vsapi);
        if (!f)
            return 0;
        PyList_SET_ITEM(frames, i, f);
    }

    PyObject *result = PyObject_CallMethod(d->engine, "run", "Oiii", frames, ctx_first, b.before, b.after);
    PyObject *iter = result ? PyObject_GetIter(result) : NULL;
    Py_XDECREF(result);
    if (!iter)
        return 0;

    while ((item = PyIter_Next(iter))) {
        int index, window_first, window_size, tile_w, tile_h;
        PyObject *array;
        const VSFrame *out = NULL;
        int parsed = PyArg_ParseTuple(item, "iOiiii", &index, &array, &window_first, &window_size, &tile_w, &tile_h);
        if (parsed && (index < b.first || index >= b.end || outputs[index - b.first]))
            snprintf(error, MESSAGE_SIZE, "engine returned frame %d, expected each of %d..%d once", index, b.first, b.end - 1);
        else if (parsed)
            out = output_frame(d, array, inputs[index - lo], window_first, window_size, tile_w, tile_h, error, core, vsapi);
        Py_DECREF(item);
        if (!out)
            break;
        outputs[index - b.first] = out;
        done++;
    }
    /* The engine's iterator may hold views of the input frames: drop it before checking them. */
    Py_DECREF(iter);
    if (PyErr_Occurred() || error[0])
        return 0;
    if (done != count) {
        snprintf(error, MESSAGE_SIZE, "engine returned %d of the %d frames of window %d..%d", done, count, b.first, b.end - 1);
        return 0;
    }
    return 1;
}

/* Runs window b with the GIL held. Returns its outputs, or NULL with the message in error. */
static const VSFrame **run_window(UpscaleData *d, WindowBounds b, int lo, const VSFrame **inputs,
                                  char *error, VSCore *core, const VSAPI *vsapi) {
    int count = b.end - b.first;
    const VSFrame **outputs = calloc(count, sizeof(*outputs));
    int ok = 0;
    if (!outputs) {
        snprintf(error, MESSAGE_SIZE, "out of host memory for the outputs of window %d..%d", b.first, b.end - 1);
        return NULL;
    }

    PyGILState_STATE gil = PyGILState_Ensure();
    /* Slots stay empty (NULL) when building an input fails; a list with holes can still be freed. */
    PyObject *frames = PyList_New(b.before + count + b.after);
    if (frames) {
        ok = run_engine(d, b, lo, inputs, outputs, frames, error, core, vsapi);
        if (!release_views(frames) && ok) {
            ok = 0;
            snprintf(error, MESSAGE_SIZE, "the engine kept a reference to an input frame after its window");
        }
        Py_DECREF(frames);
    }
    if (PyErr_Occurred())
        take_python_error(error, MESSAGE_SIZE, "");
    log_engine_messages(d, core, vsapi);
    PyGILState_Release(gil);

    if (ok)
        return outputs;
    for (int i = 0; i < count; i++)
        if (outputs[i])
            vsapi->freeFrame(outputs[i]);
    free(outputs);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The filter
 */

static void set_frame_error(int n, const char *message, VSFrameContext *frameCtx, const VSAPI *vsapi) {
    char buf[MESSAGE_SIZE + 64];
    snprintf(buf, sizeof(buf), "Upscale: frame %d: %s", n, message);
    vsapi->setFilterError(buf, frameCtx);
}

static const VSFrame *VS_CC upscaleGetFrame(int n, int activationReason, void *instanceData, void **frameData,
                                            VSFrameContext *frameCtx, VSCore *core, const VSAPI *vsapi) {
    UpscaleData *d = (UpscaleData *)instanceData;
    const VSFrame *frame = NULL;
    char error[MESSAGE_SIZE] = "";
    int lo, hi;
    (void)frameData;

    if (activationReason != arInitial && activationReason != arAllFramesReady)
        return NULL;

    /* Another request may have computed n's window already (then nothing is requested). */
    if (lookup_window(d, n, &frame, error, vsapi)) {
        if (!frame)
            set_frame_error(n, error, frameCtx, vsapi);
        return frame;
    }

    request_range(d, n, &lo, &hi);
    if (activationReason == arInitial) {
        for (int k = lo; k < hi; k++)
            vsapi->requestFrameFilter(k, d->node, frameCtx);
        return NULL;
    }

    /* arAllFramesReady: fmParallelRequests runs these one at a time, so the model runs one window
     * at a time and the lookup above sees every window computed before. */
    const VSFrame **inputs = malloc((hi - lo) * sizeof(*inputs));
    char *cuts = calloc(hi - lo, 1);
    if (!inputs || !cuts) {
        free(inputs);
        free(cuts);
        set_frame_error(n, "out of host memory for the window's input frames", frameCtx, vsapi);
        return NULL;
    }
    for (int k = lo; k < hi; k++) {
        inputs[k - lo] = vsapi->getFrameFilter(k, d->node, frameCtx);
        if (d->scene_split) {
            int err;
            cuts[k - lo] = vsapi->mapGetInt(vsapi->getFramePropertiesRO(inputs[k - lo]), "_SceneChangePrev", 0, &err) == 1 && !err;
        }
    }

    WindowBounds b = find_window(d, n, lo, hi, cuts);
    const VSFrame **outputs = run_window(d, b, lo, inputs, error, core, vsapi);
    int count = b.end - b.first;

    if (outputs) {
        frame = vsapi->addFrameRef(outputs[n - b.first]);
        /* The frames that follow n are the likely next requests: hand them to VapourSynth's cache
         * as well, as many as it recommends. */
        for (int k = n + 1; k < b.end && k <= n + d->cache_per_request; k++)
            vsapi->cacheFrame(outputs[k - b.first], k, frameCtx);
        store_window(d, b.first, count, outputs, NULL, vsapi);
    } else {
        set_frame_error(n, error, frameCtx, vsapi);
        store_window(d, b.first, count, NULL, strdup(error), vsapi);
    }

    for (int k = lo; k < hi; k++)
        vsapi->freeFrame(inputs[k - lo]);
    free(inputs);
    free(cuts);
    return frame;
}

static void VS_CC upscaleFree(void *instanceData, VSCore *core, const VSAPI *vsapi) {
    UpscaleData *d = (UpscaleData *)instanceData;
    (void)core;
    for (int i = 0; i < CACHED_WINDOWS; i++)
        clear_window(&d->windows[i], vsapi);
    vsapi->freeNode(d->node);
    /* At interpreter exit the engine goes with everything else; taking the GIL then would hang. */
    if (python_is_running() && !python_is_finalizing()) {
        PyGILState_STATE gil = PyGILState_Ensure();
        Py_XDECREF(d->engine);
        PyGILState_Release(gil);
    }
    PyThread_free_lock(d->lock);
    free(d);
}

/* ---------------------------------------------------------------------------------------------
 * create
 */

static int is_accepted_rgb(const VSVideoFormat *f) {
    if (f->sampleType == stInteger)
        return f->bitsPerSample == 8 || f->bitsPerSample == 10 || f->bitsPerSample == 16;
    return f->bitsPerSample == 16 || f->bitsPerSample == 32;
}

/* One element of an argument as a Python value (int, float or str); NULL with a Python error. */
static PyObject *element_to_python(const VSMap *in, const char *key, int index, const VSAPI *vsapi) {
    switch (vsapi->mapGetType(in, key)) {
    case ptInt:
        return PyLong_FromLongLong(vsapi->mapGetInt(in, key, index, NULL));
    case ptFloat:
        return PyFloat_FromDouble(vsapi->mapGetFloat(in, key, index, NULL));
    case ptData:
        return PyUnicode_FromStringAndSize(vsapi->mapGetData(in, key, index, NULL), vsapi->mapGetDataSize(in, key, index, NULL));
    default:
        return PyErr_Format(PyExc_ValueError, "Upscale: %s takes no clips, frames or functions; "
                            "pass a number or a string", key);
    }
}

/* An argument as a Python value: one element as itself, several (an int[] such as tile) as a list. */
static PyObject *argument_to_python(const VSMap *in, const char *key, const VSAPI *vsapi) {
    int count = vsapi->mapNumElements(in, key);
    if (count == 1)
        return element_to_python(in, key, 0, vsapi);
    PyObject *list = PyList_New(count);
    for (int i = 0; list && i < count; i++) {
        PyObject *item = element_to_python(in, key, i, vsapi);
        if (!item)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* The engine's keyword arguments: every argument the user gave but the clip, as it was given,
 * plus the clip's length. The engine checks them (their names, defaults and checks live in
 * vsrealbasicvsr/options.py); arguments left out are left out here too, so its defaults apply. */
static PyObject *engine_kwargs(const VSMap *in, int num_frames, const VSAPI *vsapi) {
    PyObject *kwargs = Py_BuildValue("{s:i}", "num_frames", num_frames);
    for (int i = 0; kwargs && i < vsapi->mapNumKeys(in); i++) {
        const char *key = vsapi->mapGetKey(in, i);
        if (strcmp(key, "clip") == 0)
            continue;
        PyObject *value = argument_to_python(in, key, vsapi);
        if (!value || PyDict_SetItemString(kwargs, key, value) < 0)
            Py_CLEAR(kwargs);
        Py_XDECREF(value);
    }
    return kwargs;
}

/* Creates the engine; on failure writes its message (passed through as it is) into error. */
static PyObject *create_engine(const VSVideoInfo *vi, const VSMap *in, char *error, const VSAPI *vsapi) {
    PyObject *module = NULL, *cls = NULL, *args = NULL, *kwargs = NULL, *engine = NULL;

    module = PyImport_ImportModule("vsrealbasicvsr.engine.engine");
    if (!module) {
        char why[MESSAGE_SIZE];
        take_python_error(why, sizeof(why), "");
        snprintf(error, MESSAGE_SIZE, "Upscale: cannot import the engine (%s); install vsrealbasicvsr with its "
                 "dependencies in this Python (pip install vsrealbasicvsr)", why);
        return NULL;
    }
    cls = PyObject_GetAttrString(module, "Engine");
    if (cls)
        args = Py_BuildValue("(iiii)", vi->width, vi->height, vi->format.sampleType, vi->format.bitsPerSample);
    if (args)
        kwargs = engine_kwargs(in, vi->numFrames, vsapi);
    if (kwargs)
        engine = PyObject_Call(cls, args, kwargs);
    if (!engine)
        take_python_error(error, MESSAGE_SIZE, "Upscale: ");

    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(cls);
    Py_XDECREF(module);
    return engine;
}

static void VS_CC upscaleCreate(const VSMap *in, VSMap *out, void *userData, VSCore *core, const VSAPI *vsapi) {
    UpscaleData d;
    UpscaleData *data;
    char error[MESSAGE_SIZE] = "";
    (void)userData;

    memset(&d, 0, sizeof(d));
    d.node = vsapi->mapGetNode(in, "clip", 0, NULL);
    const VSVideoInfo *vi = vsapi->getVideoInfo(d.node);
    const VSVideoFormat *f = &vi->format;

    if (f->colorFamily == cfUndefined || vi->width == 0 || vi->height == 0) {
        snprintf(error, sizeof(error), "Upscale: the clip has a variable %s; give it one with e.g. "
                 "core.resize.Bicubic(clip, width=..., height=..., format=vs.RGBS)",
                 f->colorFamily == cfUndefined ? "format" : "frame size");
    } else if (f->colorFamily != cfRGB) {
        snprintf(error, sizeof(error), "Upscale: %s input is not supported, the model works on RGB; convert it first, "
                 "e.g. core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s=\"709\") (use the clip's own matrix)",
                 f->colorFamily == cfYUV ? "YUV" : "GRAY");
    } else if (!is_accepted_rgb(f)) {
        char name[32] = "this format";
        vsapi->getVideoFormatName(f, name);
        snprintf(error, sizeof(error), "Upscale: %s is not supported; use RGB24, RGB30, RGB48, RGBH or RGBS, "
                 "e.g. core.resize.Point(clip, format=vs.RGBS)", name);
    } else if (vi->width > INT32_MAX / MAX_SCALE || vi->height > INT32_MAX / MAX_SCALE) {
        snprintf(error, sizeof(error), "Upscale: the clip is too large (%dx%d); crop or downscale it first", vi->width, vi->height);
    } else if (!python_is_running()) {
        snprintf(error, sizeof(error), "Upscale: Python is not running in this host; "
                 "use a host that runs .vpy scripts (vspipe, vsedit, Python)");
    }
    if (error[0]) {
        vsapi->mapSetError(out, error);
        vsapi->freeNode(d.node);
        return;
    }

    d.vi = *vi;
    d.in_height = vi->height;

    /* The engine checks the arguments; the filter reads back what it cuts windows with, and the
     * model's scale. */
    int scale = 0;
    PyGILState_STATE gil = PyGILState_Ensure();
    d.engine = create_engine(vi, in, error, vsapi);
    if (!d.engine || !get_engine_int(d.engine, "scale", 1, &scale, error) || !scale_fits(scale, error) ||
        !get_engine_int(d.engine, "max_seq_len", 1, &d.max_seq_len, error) ||
        !get_engine_int(d.engine, "overlap", 0, &d.overlap, error) ||
        !get_engine_int(d.engine, "scene_split", 0, &d.scene_split, error)) {
        Py_XDECREF(d.engine);
        PyGILState_Release(gil);
        vsapi->mapSetError(out, error);
        vsapi->freeNode(d.node);
        return;
    }
    PyGILState_Release(gil);
    d.vi.width = vi->width * scale;
    d.vi.height = vi->height * scale;

    /* The automatic window (max_seq_len=0) may be longer than the clip; a given one was clamped
     * by the engine (num_frames) before it sized its memory. */
    if (d.max_seq_len > d.vi.numFrames)
        d.max_seq_len = d.vi.numFrames;
    for (int i = 0; i < CACHED_WINDOWS; i++)
        d.windows[i].first = -1;

    d.lock = PyThread_allocate_lock();
    data = d.lock ? (UpscaleData *)malloc(sizeof(d)) : NULL;
    if (!data) {
        if (d.lock)
            PyThread_free_lock(d.lock);
        gil = PyGILState_Ensure();
        Py_DECREF(d.engine);
        PyGILState_Release(gil);
        vsapi->freeNode(d.node);
        vsapi->mapSetError(out, "Upscale: out of host memory while creating the filter");
        return;
    }
    *data = d;

    /* Windows make this a temporal filter with no fixed pattern: rpGeneral. */
    VSFilterDependency deps[] = {{data->node, rpGeneral}};
    VSNode *node = vsapi->createVideoFilter2("Upscale", &data->vi, upscaleGetFrame, upscaleFree, fmParallelRequests, deps, 1, data, core);
    if (!node) {
        /* VapourSynth frees nothing of a filter it could not create. */
        upscaleFree(data, core, vsapi);
        vsapi->mapSetError(out, "Upscale: VapourSynth could not create the filter");
        return;
    }
    data->cache_per_request = vsapi->setLinearFilter(node);
    vsapi->mapConsumeNode(out, "clip", node, maAppend);
}

/* ---------------------------------------------------------------------------------------------
 * Plugin init
 */

/* Upscale's arguments, from vsrealbasicvsr.options.filter_signature() (their one home), into buf.
 * Without Python in the host (or without the package in its Python) the filter takes any
 * arguments and create refuses them with the reason ("Python is not running", "cannot import the
 * engine"). Returns buf. */
static const char *upscale_signature(char *buf, size_t size) {
    snprintf(buf, size, "clip:vnode;any");
    if (!python_is_running() || python_is_finalizing())
        return buf;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *module = PyImport_ImportModule("vsrealbasicvsr.options");
    PyObject *signature = module ? PyObject_CallMethod(module, "filter_signature", NULL) : NULL;
    const char *text = signature ? PyUnicode_AsUTF8(signature) : NULL;
    if (text && strlen(text) < size)
        snprintf(buf, size, "%s", text);
    PyErr_Clear();
    Py_XDECREF(signature);
    Py_XDECREF(module);
    PyGILState_Release(gil);
    return buf;
}

VS_EXTERNAL_API(void) VapourSynthPluginInit2(VSPlugin *plugin, const VSPLUGINAPI *vspapi) {
    char signature[4096];
    vspapi->configPlugin("com.vsrealbasicvsr.rbvsr", "rbvsr", "RealBasicVSR video super-resolution (x4)",
                         VS_MAKE_VERSION(0, 1), VAPOURSYNTH_API_VERSION, 0, plugin);
    /* registerFunction copies the strings. */
    vspapi->registerFunction("Upscale", upscale_signature(signature, sizeof(signature)), "clip:vnode;",
                             upscaleCreate, NULL, plugin);
}
