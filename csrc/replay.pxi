# Batched replay: one sample's graph, evaluated for a whole batch at once.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# Every sample's graph in a training step has the same shape.  A Replay
# copies one sample's graph out of the arena into a program of slots, in
# topological order, and runs it over B samples with the batch as the inner,
# contiguous dimension:
#
#   - a slot that depends on an input is *batched*: it holds B values;
#   - the rest are *shared* (one value): parameters, constants, and nodes
#     computed from them only;
#   - a slot *needs a gradient* only if a parameter is below it: inputs,
#     targets and constants get none;
#   - where a batched node gives gradient to a shared slot, the B
#     contributions are added up by batch_sum, in a fixed order, so results
#     are deterministic and the pure engine (autograd/pure.py, Replay) gets
#     the same bits.
#
# Per sample, every value and every batched gradient is what the scalar
# engine computes for that sample alone (the same formulas in the same
# order); only the sums over the batch are grouped differently.
#
# The program and its numbers are owned by the Replay: the arena is read
# when the Replay is made (with the GC paused) and at the two ends of a
# sweep (the parameters' data before forward(), their grads after
# backward()), through the parameters' own handles.  Python code that runs
# inside a sweep (an autograd.function's formulas, the exception of a failed
# op) may do anything to the arena; it cannot use this Replay (`busy`).
# ---------------------------------------------------------------------------

cdef enum:
    BATCHED = 1         # the slot holds one value per sample
    NEEDS_GRAD = 2      # a parameter is below it
    NEURON = 4          # a DOT whose bias and weights are shared, inputs batched
    CONSTANT = 8        # a leaf that is neither an input nor a parameter
    LAYER = 16          # a neuron evaluated with others that read the same inputs (layers.pxi)

# The order-defining sums over a batch and the neuron kernels are plain C, so
# that they can be compiled twice (baseline and AVX2, picked at import): see
# batch_kernels.h for the order of every sum and why both builds agree bit for bit.
cdef extern from "big_buffers.h":
    void* big_calloc(size_t count, size_t size) nogil

cdef extern from "batch_kernels.h":
    double batch_sum(const double* t, Py_ssize_t n) noexcept nogil
    double batch_dot(const double* x, const double* g, Py_ssize_t n) noexcept nogil
    void neuron_forward(double* out, double bias, const double* w, const double** xs,
                        Py_ssize_t n, Py_ssize_t B) noexcept nogil
    void neuron_weight_grads(double* gw, const double** xs, const double* g,
                             Py_ssize_t n, Py_ssize_t B) noexcept nogil
    void neuron_input_grads(double** gxs, const double* w, const double* g,
                            Py_ssize_t n, Py_ssize_t B) noexcept nogil
    int batch_kernels_init(int avx2) noexcept nogil
    int batch_kernels_avx2_in_use() noexcept nogil

# a layer's kernels (layers.pxi), blocked and split across threads
cdef extern from "layer_kernels.h":
    ctypedef struct lk_layer:
        Py_ssize_t J, n, B
        const double** w
        const double* bias
        const double** xs
        double** out
        const double** g
        double** gw
        double** gx
        const Py_ssize_t* gk
        Py_ssize_t m
    int layer_forward(const lk_layer* L, int threads) noexcept nogil
    int layer_weight_grads(const lk_layer* L, int threads) noexcept nogil
    int layer_input_grads(const lk_layer* L, int threads) noexcept nogil
    int layer_kernels_init(int level) noexcept nogil
    int layer_kernels_level() noexcept nogil
    double layer_kernels_min_work(double value) noexcept nogil
    int layer_threads_init() noexcept
    void layer_threads_after_fork() noexcept

cdef class _Layers       # defined in layers.pxi

_KERNEL_BUILDS = ("baseline", "avx2", "avx512")
layer_kernels_init(2 if batch_kernels_init(1) else 0)
layer_threads_init()


def _register_at_fork():
    """In a child process after fork(), the parent's pool of layer threads
    does not exist (layer_threads.h): the child forgets it.  (Registered
    once, here; no name of the module can call it.)"""
    def forget_layer_threads():
        layer_threads_after_fork()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=forget_layer_threads)


_register_at_fork()
del _register_at_fork


def _batch_kernels(build=None):
    """The build of the replay's kernels in use: "baseline", "avx2" (the
    neuron and layer kernels) or "avx512" (AVX2 neuron kernels, AVX-512 layer
    kernels); all give the same bits.  With a build named, switch first to
    the highest build up to it that this CPU runs (tests compare them)."""
    if build is not None:
        if build not in _KERNEL_BUILDS:
            raise ValueError("_batch_kernels(): the builds are %s, not %r" % (_KERNEL_BUILDS, build))
        level = _KERNEL_BUILDS.index(build)
        layer_kernels_init(level if batch_kernels_init(1 if level else 0) else 0)
    return _KERNEL_BUILDS[layer_kernels_level()]


def _layer_min_work(work=None):
    """The multiply-adds each thread of a layer kernel must get for the call
    to use it (1e6 by default: handing a job to a waiting thread costs about
    as much).  With a number, set it first: tests lower it to run small
    layers on several threads."""
    if work is not None:
        if not _real(work, "work") > 0:
            raise ValueError("_layer_min_work(): the work must be > 0, not %r" % (work,))
        layer_kernels_min_work(_real(work, "work"))
    return layer_kernels_min_work(0.0)


cdef array.array _DOUBLES = array.array("d")     # the type of _float_rows' rows


def _float_rows(rows):
    """Each row of `rows` (a list) as an array('d'), in one C loop, where every
    row is a list or tuple of exact floats and ints, all of one length; else
    None, and the caller checks the rows one by one (naming what is wrong).
    The GC is paused: with exact types, no Python code can run in here."""
    if type(rows) is not list or not rows:
        return None
    cdef list xs = rows
    cdef Py_ssize_t n = len(xs), width = -1, i, j
    cdef list out = _nones(n)
    cdef object row, x
    cdef double* to
    cdef array.array converted
    cdef int gc_was_on = PyGC_Disable()
    try:
        for i in range(n):
            row = xs[i]
            if type(row) is not list and type(row) is not tuple:
                return None
            if width < 0:
                width = len(row)
            if len(row) != width:
                return None
            converted = array.clone(_DOUBLES, width, False)
            to = converted.data.as_doubles
            for j in range(width):
                x = row[j]
                if type(x) is float:
                    to[j] = PyFloat_AS_DOUBLE(x)
                elif type(x) is int:
                    try:
                        to[j] = PyLong_AsDouble(x)
                    except OverflowError:
                        return None
                else:
                    return None
            out[i] = converted
        return out
    finally:
        if gc_was_on:
            PyGC_Enable()


cdef list _load_parts(tuple table, Py_ssize_t ninputs):
    """Replay.load()'s tuple of tables as typed 2-D views (rows, columns),
    whose widths add up to ninputs and whose rows are as many."""
    cdef const double[:, ::1] part
    cdef list views = []
    cdef Py_ssize_t width = 0, nrows = 0
    for item in table:
        try:            # (None would be an empty view, and a record of one double a double)
            if item is None or memoryview(item).format not in ("d", "<d", "=d"):
                raise TypeError()
            part = item
        except (TypeError, ValueError, BufferError):
            raise TypeError("load() takes a tuple of 2-D C-contiguous buffers of doubles "
                            "(float64 numpy arrays, say), not one holding %s"
                            % type(item).__name__) from None
        if views and part.shape[0] != nrows:
            raise ValueError("load(): the tables have %d and %d rows, not the same number"
                             % (nrows, part.shape[0]))
        nrows = part.shape[0]
        views.append(part)
        width += part.shape[1]
    if width != ninputs:
        raise ValueError("load(): the tables have %d columns side by side, for %d inputs"
                         % (width, ninputs))
    return views


cdef class Replay:
    """One sample's graph, replayed over a batch of samples.

        xs = [Value(0.0), Value(0.0)]; t = Value(0.0)      # placeholders
        out = model(xs); loss = hinge_loss(out, t)
        replay = Replay([loss, out], inputs=xs + [t], params=model.parameters())
        replay.load(table, rows)    # sample b's inputs: row rows[b] of table
        replay.forward()            # every output for every sample
        replay.sum(0)               # loss[0] + loss[1] + ... over the batch
        replay.backward(0, 1 / B)   # params' grads += d/dp (sum_b loss_b / B)

    The graph is recorded when the Replay is made: leaves that are neither
    inputs nor parameters are constants with their data of that moment;
    parameters are read from their Values at every forward().  Inputs and
    parameters must be leaves.
    """
    cdef Py_ssize_t n                   # slots, in topological order
    cdef uint8_t* op
    cdef uint8_t* kind                  # BATCHED, NEEDS_GRAD, NEURON, CONSTANT
    cdef Py_ssize_t* off                # row of bvals (batched) or index into svals
    cdef Py_ssize_t* ka                 # child slots, or first edge and count (n-ary)
    cdef Py_ssize_t* kb
    cdef Py_ssize_t* edges              # child slots of n-ary nodes
    cdef Py_ssize_t* interior           # the slots that are not leaves, ascending: what
    cdef Py_ssize_t ninterior           # the sweeps visit (the parameters' slots are leaves)
    cdef Py_ssize_t nbatched, nshared, width   # width: the widest n-ary node
    cdef Py_ssize_t lowest              # (recording) the lowest node reached
    cdef double* svals                  # shared values and grads
    cdef double* sgrad
    cdef double* bvals                  # batched rows of B values and grads
    cdef double* bgrad
    cdef double* scratch                # B doubles per edge of the widest node
    cdef double* wbuf                   # a neuron's weights, gathered
    cdef double* gwbuf                  # and their gradients
    cdef const double** xrows           # its input rows
    cdef double** gxrows                # their gradient rows (NULL: none needed)
    cdef Py_ssize_t* input_slot         # -1: not used by the outputs
    cdef Py_ssize_t* param_off          # their offsets in svals (-1: not used; NULL: k for each k)
    cdef _Runs param_runs               # their nodes, in runs (runs.pxi)
    cdef Py_ssize_t* output_slot
    cdef Py_ssize_t ninputs, nparams, noutputs
    cdef Py_ssize_t B                   # the batch loaded; 0 before load()
    cdef Py_ssize_t stride              # doubles from one batched row to the next (>= B)
    cdef tuple ps                       # the params, owned: their handles stay valid
    cdef dict customs                   # slot -> _Custom of an autograd.function node
    cdef bint busy                      # a method is running (see the top)
    cdef bint ready                     # forward() completed for the batch loaded
    cdef bint recorded                  # __init__ completed
    cdef _Layers layers                 # neurons evaluated together (layers.pxi)
    cdef int nthreads                   # threads a layer's kernels may use

    def __cinit__(self):
        self.n = 0
        self.nthreads = 1

    def __dealloc__(self):
        free(self.op); free(self.kind); free(self.off); free(self.ka); free(self.kb)
        free(self.edges); free(self.interior); free(self.svals); free(self.sgrad); free(self.bvals)
        free(self.bgrad); free(self.scratch); free(self.wbuf)
        free(self.gwbuf); free(self.xrows); free(self.gxrows)
        free(self.input_slot); free(self.param_off); free(self.output_slot)

    def __reduce__(self):
        raise TypeError("a Replay cannot be pickled: it points into one process's graph; "
                        "record a new one from the model where it is needed")

    def __init__(self, outputs, inputs, params):
        """Record the graph of `outputs` over the placeholder `inputs` and the `params`."""
        if self.recorded or self.op != NULL:
            raise RuntimeError("a Replay is recorded once, when it is made")
        # 1. Python-level input: private tuples (tuple() of a tuple is itself)
        cdef tuple outs = _replay_values(outputs, "outputs")
        cdef tuple ins = tuple(inputs)
        cdef tuple ps = tuple(params)
        self.customs = {}
        # the inputs' and parameters' nodes, read once, in the order of the
        # handle table where they follow each other (see _next_node)
        cdef Py_ssize_t* at = <Py_ssize_t*>malloc((len(ins) + len(ps) + 1) * sizeof(Py_ssize_t))
        if at == NULL:
            raise MemoryError()
        # 2./3. no Python code runs from reading the nodes to the end of the
        # recording: the GC is paused
        cdef int gc_was_on = PyGC_Disable()
        try:
            _replay_nodes(ins, at, "inputs")
            _replay_nodes(ps, at + len(ins), "params")
            if not outs:
                raise ValueError("Replay() needs at least one output")
            self.ps = ps
            self.ninputs, self.nparams, self.noutputs = len(ins), len(ps), len(outs)
            self._record(outs, at, at + len(ins))
        finally:
            if gc_was_on:
                PyGC_Enable()
            free(at)
        self.recorded = True

    cdef int _record(self, tuple outs, const Py_ssize_t* in_at, const Py_ssize_t* param_at) except -1:
        """Record the graph; in_at and param_at are the inputs' and the
        parameters' nodes, read since the last point where Python code ran."""
        cdef Py_ssize_t top = 0, i, k, e, s, nedges
        cdef uint8_t* role = NULL          # per node: 1 reachable, 2 input, 4 parameter
        cdef Py_ssize_t* slot_of = NULL
        try:
            for v in outs:
                _check(<Value>v)
                top = max(top, (<Value>v).idx + 1)
            for k in range(self.ninputs):
                top = max(top, in_at[k] + 1)
            for k in range(self.nparams):
                top = max(top, param_at[k] + 1)
            role = <uint8_t*>calloc(top, 1)
            slot_of = <Py_ssize_t*>malloc(top * sizeof(Py_ssize_t))
            if role == NULL or slot_of == NULL:
                raise MemoryError()
            _replay_roles(role, in_at, self.ninputs, 2, "inputs")
            _replay_roles(role, param_at, self.nparams, 4, "params")
            # reachable from the outputs: one downward sweep (children are below)
            nedges = self._reach(outs, role, top, 0)
            self._allocate(nedges)
            self.param_off = <Py_ssize_t*>malloc((self.nparams + 1) * sizeof(Py_ssize_t))
            if self.param_off == NULL:
                raise MemoryError()
            # slots in index order: a child's slot is below its parent's
            s = 0
            e = 0
            for i in range(self.lowest, top):
                if role[i] & 1:
                    slot_of[i] = s
                    e = self._node_slot(i, s, e, role, slot_of)
                    s += 1
            self._allocate_numbers(top, role, slot_of)
            for k in range(self.ninputs):
                i = in_at[k]
                self.input_slot[k] = slot_of[i] if role[i] & 1 else -1
            for k in range(self.nparams):
                i = param_at[k]
                self.param_off[k] = self.off[slot_of[i]] if role[i] & 1 else -1
            self.param_runs = _Runs()
            self.param_runs.made_of(param_at, self.param_off, self.nparams)
            for k in range(self.noutputs):
                self.output_slot[k] = slot_of[(<Value>outs[k]).idx]
            self.layers = _Layers()
            self.layers.find(self)
        finally:
            free(role)
            free(slot_of)
        return 0

    @classmethod
    def layered(cls, layers, head, targets=0, params=None):
        """A Replay of dense layers and a head, made from their description
        without running them: the same program, bit for bit, as
        Replay(head(model outputs, targets), inputs + targets, params) on
        the graph that dense() builds layer after layer, for a fraction of
        the set-up (no graph of the layers, no slot per weight).

        layers: (weights, biases, activation) per layer, as dense() takes
        them; a layer's rows have one weight per output of the layer before
        (the first layer's: one per input).  head(outputs, targets) is called
        once, with placeholder leaves for the last layer's outputs and for
        `targets` targets, and returns the Replay's outputs.  The inputs are
        the first layer's, then the targets; the parameters (`params`) each
        neuron's weights then its bias, layer after layer.  Given `params`, a
        tuple of those very Values in that order (an earlier layered()
        Replay's, say), the Replay holds it instead of a tuple of its own:
        making and freeing one is a pass over every parameter object.  Any
        other tuple is not used."""
        cdef Replay self = Replay.__new__(Replay)
        cdef Py_ssize_t ntargets = operator.index(targets), nlayers, l, last
        if ntargets < 0:
            raise ValueError("Replay.layered(): targets must be >= 0, not %d" % ntargets)
        # 1. Python-level input: the layers' lists (converted where they are
        #    not lists or tuples), the head's outputs over new placeholders.
        #    From step 2 on the lists are read as they are then.
        cdef list rows_of = [], biases_of = []
        cdef array.array acts = array.array("B")
        for l, spec in enumerate(layers):
            if not _is_list_or_tuple(spec) or len(spec) != 3:
                raise TypeError("Replay.layered(): layer %d is not a (weights, biases, "
                                "activation) triple" % l)
            weights, biases, activation = spec
            act_name = _exact_str(activation, "activation") if isinstance(activation, str) else None
            if act_name is None or act_name not in _ACTIVATIONS:
                raise ValueError("Replay.layered(): layer %d's activation is %r: choose one of %s"
                                 % (l, activation, tuple(_ACTIVATIONS)))
            acts.append(_ACTIVATIONS[act_name])
            rows_of.append(weights if _rows_are_lists_or_tuples(weights)
                           else [row if _is_list_or_tuple(row) else list(row) for row in weights])
            biases_of.append(biases if _is_list_or_tuple(biases) else list(biases))
        nlayers = len(rows_of)
        if nlayers == 0:
            raise ValueError("Replay.layered() needs at least one layer")
        last = len(rows_of[nlayers - 1])
        placeholders = [Value(0.0) for _ in range(last)]
        target_leaves = [Value(0.0) for _ in range(ntargets)]
        with enable_grad():
            result = head(list(placeholders), list(target_leaves))
        cdef tuple outs = _replay_values(result, "outputs")
        if not outs:
            raise ValueError("Replay.layered(): the head returned no outputs")
        self.customs = {}
        cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc((2 * nlayers + 1) * sizeof(Py_ssize_t))
        cdef Py_ssize_t* at = NULL
        cdef tuple ps
        cdef _Runs runs
        if sizes == NULL:
            raise MemoryError()
        # 2./3. no Python code runs from reading the lists to the end of the
        # recording: the GC is paused
        cdef int gc_was_on = PyGC_Disable()
        try:
            ps = _layer_params(rows_of, biases_of, sizes, nlayers,
                               params if type(params) is tuple else None)
            if sizes[2 * nlayers - 2] != last:      # the head changed the lists
                raise ValueError("Replay.layered(): the last layer has %d neurons, not the %d "
                                 "it had when the head was called"
                                 % (sizes[2 * nlayers - 2], last))
            at = <Py_ssize_t*>malloc((last + ntargets + 1) * sizeof(Py_ssize_t))
            if at == NULL:
                raise MemoryError()
            runs = _runs_of_params(ps)
            _replay_nodes(tuple(placeholders), at, "outputs")
            _replay_nodes(tuple(target_leaves), at + last, "targets")
            self.ps = ps
            self.ninputs, self.nparams, self.noutputs = sizes[1] + ntargets, len(ps), len(outs)
            self._record_layered(outs, sizes, acts.data.as_uchars, nlayers, runs,
                                 at, at + last, ntargets)
        finally:
            if gc_was_on:
                PyGC_Enable()
            free(sizes)
            free(at)
        self.recorded = True
        return self

    cdef int _record_layered(self, tuple outs, const Py_ssize_t* sizes, const uint8_t* acts,
                             Py_ssize_t nlayers, _Runs runs,
                             const Py_ssize_t* out_at, const Py_ssize_t* target_at,
                             Py_ssize_t ntargets) except -1:
        """The program of layered(): the layers' slots (sizes[2l], sizes[2l+1]:
        layer l's neurons and inputs), then the head's, recorded from the
        arena as _record() does, its placeholders (out_at) standing for the
        last layer's outputs; `runs` are the parameters' nodes.  The
        parameters take the first offsets of the
        shared values, in their own order (param_off is NULL: parameter k's
        offset is k, and no parameter is left out), so a model
        whose parameters follow each other in the arena is one run."""
        cdef Py_ssize_t top = 0, i, k, j, l, e, s, p = 0, J, n, nedges = 0, nslots, nmembers = 0
        cdef Py_ssize_t prev_first = 0, prev_step = 1, first_bias, inedge, n0 = sizes[1]
        cdef uint8_t* role = NULL          # per node: 1 reachable, 2 target, 4 parameter, 8 placeholder
        cdef Py_ssize_t* slot_of = NULL
        cdef Py_ssize_t* member = NULL     # a layer's members: slots, weights' offsets, biases' slots
        try:
            for v in outs:
                _check(<Value>v)
                top = max(top, (<Value>v).idx + 1)
            for k in range(runs.count):
                top = max(top, runs.node[k] + runs.length[k])
            for k in range(sizes[2 * nlayers - 2]):
                top = max(top, out_at[k] + 1)
            for k in range(ntargets):
                top = max(top, target_at[k] + 1)
            role = <uint8_t*>calloc(top, 1)
            slot_of = <Py_ssize_t*>malloc(top * sizeof(Py_ssize_t))
            if role == NULL or slot_of == NULL:
                raise MemoryError()
            _replay_run_roles(role, runs, "params")
            for k in range(sizes[2 * nlayers - 2]):
                role[out_at[k]] |= 8
            for k in range(ntargets):
                role[target_at[k]] |= 2
            nedges = self._reach(outs, role, top, 4)
            for k in range(sizes[2 * nlayers - 2]):      # the placeholders have no slots
                if role[out_at[k]] & 1:
                    self.n -= 1
            nslots = n0
            for l in range(nlayers):
                J, n = sizes[2 * l], sizes[2 * l + 1]
                nslots += J * (3 if acts[l] != LEAF else 2)
                nedges += n
                nmembers += J
                self.width = max(self.width, n)
            self.n += nslots
            self._allocate(nedges)
            self.layers = _Layers()
            self.layers.reserve(self.n, nlayers, nmembers)
            member = <Py_ssize_t*>malloc(3 * (nmembers + 1) * sizeof(Py_ssize_t))
            if member == NULL:
                raise MemoryError()
            # the inputs, then each layer: its biases, then each neuron and its
            # activation (as dense() makes them); its inputs, the slots of the
            # layer before's outputs, are its edges
            self.nshared = self.nparams
            for s in range(n0):
                self.kind[s] = BATCHED
                self._number(s)
                self.input_slot[s] = s
            s = n0
            e = 0
            for l in range(nlayers):
                J, n = sizes[2 * l], sizes[2 * l + 1]
                inedge = e
                for k in range(n):
                    self.edges[e + k] = prev_first + k * prev_step
                e += n
                first_bias = s
                for j in range(J):
                    self.kind[s] = NEEDS_GRAD
                    self.off[s] = p + j * (n + 1) + n
                    s += 1
                for j in range(J):
                    self.op[s] = DOT
                    self.kind[s] = BATCHED | NEEDS_GRAD | NEURON
                    self.ka[s], self.kb[s] = inedge, n
                    self._number(s)
                    self.interior[self.ninterior] = s
                    self.ninterior += 1
                    member[j], member[J + j], member[2 * J + j] = s, p + j * (n + 1), first_bias + j
                    s += 1
                    if acts[l] != LEAF:
                        self.op[s] = acts[l]
                        self.kind[s] = BATCHED | NEEDS_GRAD
                        self.ka[s], self.kb[s] = s - 1, -1
                        self._number(s)
                        self.interior[self.ninterior] = s
                        self.ninterior += 1
                        s += 1
                self.layers.add(self, inedge, n, member, member + J, member + 2 * J, J)
                prev_first = first_bias + J + (1 if acts[l] != LEAF else 0)
                prev_step = 2 if acts[l] != LEAF else 1
                p += J * (n + 1)
            for k in range(sizes[2 * nlayers - 2]):
                slot_of[out_at[k]] = prev_first + k * prev_step
            # the head: the nodes reached, in index order, its placeholders
            # standing for the last layer's outputs
            for i in range(self.lowest, top):
                if role[i] & 1 and not (role[i] & 8):
                    slot_of[i] = s
                    e = self._node_slot(i, s, e, role, slot_of)
                    s += 1
            self._allocate_numbers(top, role, slot_of)
            for k in range(ntargets):
                i = target_at[k]
                self.input_slot[n0 + k] = slot_of[i] if role[i] & 1 else -1
            self.param_runs = runs
            for k in range(self.noutputs):
                self.output_slot[k] = slot_of[(<Value>outs[k]).idx]
            self.layers._allocate(self.width)
        finally:
            free(role)
            free(slot_of)
            free(member)
        return 0

    cdef Py_ssize_t _reach(self, tuple outs, uint8_t* role, Py_ssize_t top,
                           uint8_t refused) except -1:
        """Mark (role 1) the outputs' nodes and every node below them, in one
        downward sweep (children are below) that ends at the last one; count
        them in self.n, the widest n-ary node in self.width, the lowest in
        self.lowest; return their edges.  A node whose role has a bit of
        `refused` is an error (Replay.layered())."""
        cdef Py_ssize_t i, k, nedges = 0, pending = 0
        for v in outs:
            pending += _mark(role, (<Value>v).idx)
        self.lowest = top
        for i in range(top - 1, -1, -1):
            if pending == 0:
                break
            if not (role[i] & 1):
                continue
            pending -= 1
            self.lowest = i
            if role[i] & refused:
                raise ValueError("Replay.layered(): the head's outputs depend on a parameter "
                                 "of the layers; the head sees the layers' outputs and the "
                                 "targets only")
            self.n += 1
            if _is_nary(A.op[i]):
                nedges += A.b[i]
                self.width = max(self.width, A.b[i])
                for k in range(A.a[i], A.a[i] + A.b[i]):
                    pending += _mark(role, A.edges[k])
            elif A.op[i] != LEAF:
                pending += _mark(role, A.a[i])
                if A.b[i] >= 0:
                    pending += _mark(role, A.b[i])
        return nedges

    cdef Py_ssize_t _node_slot(self, Py_ssize_t i, Py_ssize_t s, Py_ssize_t e, const uint8_t* role,
                               const Py_ssize_t* slot_of) except -1:
        """Node i of the arena as slot s, its edges (if n-ary) from edge e on;
        returns the next free edge.  role: 2 an input, 4 a parameter."""
        cdef Py_ssize_t k, c, first, count
        cdef _Custom info
        self.op[s] = A.op[i]
        if A.op[i] != LEAF:
            self.interior[self.ninterior] = s
            self.ninterior += 1
        if A.op[i] == LEAF:
            if role[i] & 2:
                self.kind[s] = BATCHED
            elif role[i] & 4:
                self.kind[s] = NEEDS_GRAD
            else:
                self.kind[s] = CONSTANT
        elif _is_nary(A.op[i]):
            first, count = A.a[i], A.b[i]
            self.ka[s], self.kb[s] = e, count
            for k in range(count):
                c = slot_of[A.edges[first + k]]
                self.edges[e + k] = c
                self.kind[s] |= self.kind[c] & (BATCHED | NEEDS_GRAD)
            e += count
            if A.op[i] == DOT:
                self._mark_neuron(s)
            elif A.op[i] == CUSTOM:
                info = (<Value>A.handle[i]).custom if A.handle[i] != NULL else None
                if info is None or info.forward is None or info.partials is None:
                    raise RuntimeError(
                        "Replay() cannot replay the custom node '%s': its chain rule is "
                        "a Python `_backward` (it was made by Value(data, _children, _op), "
                        "or its `_backward` was assigned), not a forward formula and "
                        "partials. Make the op with autograd.function(forward, *partials) "
                        "to replay it."
                        % (info.op if info is not None else ""))
                if len(info.partials) != count:
                    raise RuntimeError("Replay(): the custom node '%s' has %d inputs "
                                       "for %d partial derivatives"
                                       % (info.op, count, len(info.partials)))
                self.customs[s] = info
        else:
            c = slot_of[A.a[i]]
            self.ka[s] = c
            self.kind[s] |= self.kind[c] & (BATCHED | NEEDS_GRAD)
            self.kb[s] = -1
            if A.b[i] >= 0:
                c = slot_of[A.b[i]]
                self.kb[s] = c
                if A.op[i] != POWC and A.op[i] != IPOWC:    # a constant exponent: no gradient
                    self.kind[s] |= self.kind[c] & (BATCHED | NEEDS_GRAD)
                else:
                    self.kind[s] |= self.kind[c] & BATCHED
        self._number(s)
        return e

    cdef inline void _number(self, Py_ssize_t s) noexcept:
        """Slot s's place among the batched rows or the shared values."""
        if self.kind[s] & BATCHED:
            self.off[s] = self.nbatched
            self.nbatched += 1
        else:
            self.off[s] = self.nshared
            self.nshared += 1

    cdef int _allocate_numbers(self, Py_ssize_t top, const uint8_t* role,
                               const Py_ssize_t* slot_of) except -1:
        """The shared values and the buffers of the general sweeps; the
        constants (nodes below `top` reached, role 1, as CONSTANT slots)
        keep today's data."""
        cdef Py_ssize_t i
        self.svals = <double*>big_calloc(self.nshared + 1, sizeof(double))
        self.sgrad = <double*>big_calloc(self.nshared + 1, sizeof(double))
        self.wbuf = <double*>malloc((self.width + 1) * sizeof(double))
        self.gwbuf = <double*>malloc((self.width + 1) * sizeof(double))
        self.xrows = <const double**>malloc((self.width + 1) * sizeof(double*))
        self.gxrows = <double**>malloc((self.width + 1) * sizeof(double*))
        if (self.svals == NULL or self.sgrad == NULL or self.wbuf == NULL or self.gwbuf == NULL
                or self.xrows == NULL or self.gxrows == NULL):
            raise MemoryError()
        for i in range(self.lowest, top):
            if role[i] & 1 and self.kind[slot_of[i]] & CONSTANT:
                self.svals[self.off[slot_of[i]]] = A.data[i]
        return 0

    cdef int _allocate(self, Py_ssize_t nedges) except -1:
        cdef Py_ssize_t n = self.n + 1
        self.op = <uint8_t*>calloc(n, 1)
        self.kind = <uint8_t*>calloc(n, 1)
        self.off = <Py_ssize_t*>calloc(n, sizeof(Py_ssize_t))
        self.ka = <Py_ssize_t*>calloc(n, sizeof(Py_ssize_t))
        self.kb = <Py_ssize_t*>calloc(n, sizeof(Py_ssize_t))
        self.edges = <Py_ssize_t*>calloc(nedges + 1, sizeof(Py_ssize_t))
        self.interior = <Py_ssize_t*>calloc(n, sizeof(Py_ssize_t))
        self.input_slot = <Py_ssize_t*>calloc(self.ninputs + 1, sizeof(Py_ssize_t))
        self.param_off = NULL
        self.output_slot = <Py_ssize_t*>calloc(self.noutputs + 1, sizeof(Py_ssize_t))
        if (self.op == NULL or self.kind == NULL or self.off == NULL or self.ka == NULL
                or self.kb == NULL or self.edges == NULL or self.interior == NULL
                or self.input_slot == NULL
                or self.output_slot == NULL):
            raise MemoryError()
        return 0

    cdef void _mark_neuron(self, Py_ssize_t s) noexcept:
        """A DOT node of the usual neuron form gets the fast kernels."""
        cdef Py_ssize_t k, e = self.ka[s], n = (self.kb[s] - 1) // 2
        if not (self.kind[s] & BATCHED) or self.kind[self.edges[e]] & BATCHED:
            return
        for k in range(n):
            if self.kind[self.edges[e + 1 + k]] & BATCHED:
                return
            if not (self.kind[self.edges[e + 1 + n + k]] & BATCHED):
                return
        self.kind[s] |= NEURON

    # -- pointers to a slot's numbers ---------------------------------------------
    cdef inline double* _val(self, Py_ssize_t s) noexcept:
        if self.kind[s] & BATCHED:
            return self.bvals + self.off[s] * self.stride
        return self.svals + self.off[s]

    cdef inline double* _grad(self, Py_ssize_t s) noexcept:
        if self.kind[s] & BATCHED:
            return self.bgrad + self.off[s] * self.stride
        return self.sgrad + self.off[s]

    cdef inline Py_ssize_t _len(self, Py_ssize_t s) noexcept:
        return self.B if self.kind[s] & BATCHED else 1

    cdef inline Py_ssize_t _stride(self, Py_ssize_t s) noexcept:
        return 1 if self.kind[s] & BATCHED else 0

    cdef int _enter(self, str what) except -1:
        if not self.recorded:
            raise RuntimeError("this Replay was never recorded (made by Replay.__new__, or its "
                               "__init__ failed)")
        if self.busy:
            raise RuntimeError("Replay.%s() was called while this Replay is running "
                               "(from code its own sweep ran, or from another thread)" % what)
        self.busy = True
        return 0

    # -- the batch ----------------------------------------------------------------
    @property
    def batch_size(self):
        """The number of samples loaded (0 before load())."""
        return self.B

    def _layers_info(self):
        """The layers this replay runs as one (layers.pxi), for tests: their
        numbers of neurons, and how many threads the last kernel used."""
        if self.layers is None:
            return {"sizes": [], "threads_used": 0}
        return {"sizes": [self.layers.size[k] for k in range(self.layers.count)],
                "threads_used": self.layers.last_threads}

    @property
    def params(self):
        """The parameters, as a tuple, in the order given (layered(): each
        neuron's weights, then its bias, layer after layer)."""
        return self.ps

    @property
    def threads(self):
        """How many threads a layer's kernels may use (1 by default).  The
        results are the same bits for any number: work is split by neurons
        or inputs, never inside a sum."""
        return self.nthreads

    @threads.setter
    def threads(self, count):
        self.nthreads = _thread_count(count)

    def load(self, table, rows):
        """Load a batch: sample b's inputs are row rows[b] of table, a buffer
        of doubles (array('d') or a float64 numpy array) holding
        len(inputs) numbers per row; or a tuple of 2-D C-contiguous buffers
        of doubles with the same number of rows, whose columns, side by
        side, are the inputs (a data matrix and a matrix of targets, say,
        each read where it is)."""
        # 1. Python-level input: the tables as typed views, held until the
        #    end (a buffer cannot be resized or freed while a view of it is
        #    held), and the rows into a private array
        cdef const double[::1] flat
        cdef const double[:, ::1] part
        cdef list parts = None
        cdef Py_ssize_t nparts = 1, nrows = 0, p
        if type(table) is tuple:
            parts = _load_parts(table, self.ninputs)
            nparts = len(parts)
            if parts:
                part = parts[0]
                nrows = part.shape[0]
        else:
            try:
                if table is None:       # (None would be an empty view)
                    raise TypeError()
                flat = table
            except (TypeError, ValueError, BufferError):
                raise TypeError("load() takes the table as a buffer of doubles (array('d') or "
                                "a float64 numpy array), not %s" % type(table).__name__) from None
            if self.ninputs and flat.shape[0] % self.ninputs:
                raise ValueError("load(): the table has %d numbers, not a whole number of rows "
                                 "of %d inputs" % (flat.shape[0], self.ninputs))
            nrows = flat.shape[0] // self.ninputs if self.ninputs else 0
        cdef list picks = list(rows)
        cdef Py_ssize_t B = len(picks), k, r, i, first
        if B < 1:
            raise ValueError("load() needs at least one row")
        cdef Py_ssize_t* at = <Py_ssize_t*>malloc((B + nparts) * sizeof(Py_ssize_t))
        cdef const double** base = <const double**>malloc((nparts + 1) * sizeof(double*))
        cdef Py_ssize_t* width = at + B
        try:
            if at == NULL or base == NULL:
                raise MemoryError()
            for k in range(B):
                picks[k] = operator.index(picks[k])
            for k in range(B):          # compared as Python ints: 2**63 is out, not an overflow
                if self.ninputs and not 0 <= picks[k] < nrows:
                    raise IndexError("load(): row %d is out of the table's %d rows"
                                     % (picks[k], nrows))
                at[k] = picks[k] if self.ninputs else 0     # (no inputs: no row is read)
            if parts is None:                   # one part: rows of ninputs
                width[0] = self.ninputs
                base[0] = &flat[0] if nrows else NULL
            else:                               # Cython's views: no Python code runs
                for p in range(nparts):
                    part = parts[p]
                    width[p] = part.shape[1]
                    base[p] = &part[0, 0] if nrows and width[p] else NULL
            # 2. no Python code from here on
            self._enter("load")
            try:
                self._resize(B)
                first = 0
                for p in range(nparts):
                    for i in range(width[p]):
                        if self.input_slot[first + i] < 0:
                            continue
                        r = self.off[self.input_slot[first + i]] * self.stride
                        for k in range(B):
                            self.bvals[r + k] = base[p][at[k] * width[p] + i]
                    first += width[p]
            finally:
                self.busy = False
        finally:
            free(at)
            free(base)

    cdef int _resize(self, Py_ssize_t B) except -1:
        if B != self.B:
            free(self.bvals); free(self.bgrad); free(self.scratch)
            self.stride = _row_stride(B)
            self.bvals = <double*>big_calloc(self.nbatched * self.stride + 1, sizeof(double))
            self.bgrad = <double*>big_calloc(self.nbatched * self.stride + 1, sizeof(double))
            self.scratch = <double*>calloc((self.width + 2) * B, sizeof(double))
            if self.bvals == NULL or self.bgrad == NULL or self.scratch == NULL:
                free(self.bvals); free(self.bgrad); free(self.scratch)
                self.bvals = self.bgrad = self.scratch = NULL
                self.B = 0
                raise MemoryError()
            self.B = B
        self.ready = False
        return 0

    # -- forward ------------------------------------------------------------------
    def forward(self):
        """Compute every slot for every sample of the batch loaded."""
        cdef Py_ssize_t k, s
        cdef tuple params = self.ps
        self._enter("forward")
        try:
            if self.B == 0:
                raise RuntimeError("Replay.forward(): load() a batch first")
            self.ready = False
            self._read_params(params)           # the parameters as they are now
            for k in range(self.ninterior):
                self._eval(self.interior[k])
            self.ready = True
        finally:
            self.busy = False

    cdef int _read_params(self, tuple params) except -1:
        """The parameters' data into their slots, run by run (runs.pxi)."""
        cdef _Runs runs = self.param_runs
        cdef Py_ssize_t r
        runs.refresh(params, self.param_off)
        for r in range(runs.count):
            memcpy(self.svals + runs.at[r], A.data + runs.node[r], runs.length[r] * sizeof(double))
        return 0

    cdef int _eval(self, Py_ssize_t s) except -1:
        cdef uint8_t op = self.op[s]
        cdef Py_ssize_t n = self._len(s), b, k, e, count
        cdef double* out = self._val(s)
        cdef double* x
        cdef double* y
        cdef Py_ssize_t sx, sy
        if self.kind[s] & LAYER:
            if self.layers.starts_at(s):                # the whole layer, at its first member
                self.layers.forward(self, s)
        elif self.kind[s] & NEURON:
            self._neuron_forward(s)
        elif op == SUM or op == DOT or op == LSE:
            e, count = self.ka[s], self.kb[s]
            for b in range(n):
                x = self.scratch
                for k in range(count):          # the inputs of sample b, in order
                    x[k] = self._val(self.edges[e + k])[b * self._stride(self.edges[e + k])]
                if op == SUM:
                    out[b] = _sum_of(x, count)
                elif op == DOT:
                    out[b] = _dot_of(x, count)
                else:
                    out[b] = lse_f(x, count)
        elif op == CUSTOM:
            self._custom_forward(s)
        else:
            x, sx = self._val(self.ka[s]), self._stride(self.ka[s])
            y, sy = x, 0                # one-input ops ignore y
            if self.kb[s] >= 0:
                y, sy = self._val(self.kb[s]), self._stride(self.kb[s])
            _map(op, out, x, sx, y, sy, n)
        return 0

    cdef void _neuron_forward(self, Py_ssize_t s) noexcept:
        """out[b] = bias + w0*x0[b] + w1*x1[b] + ..., left to right for each
        sample (neuron_forward in batch_kernels.h)."""
        cdef Py_ssize_t e = self.ka[s], n = (self.kb[s] - 1) // 2, k
        for k in range(n):
            self.wbuf[k] = self._val(self.edges[e + 1 + k])[0]
            self.xrows[k] = self._val(self.edges[e + 1 + n + k])
        neuron_forward(self._val(s), self._val(self.edges[e])[0], self.wbuf, self.xrows, n, self.B)

    cdef int _custom_forward(self, Py_ssize_t s) except -1:
        """An autograd.function node: its forward formula, once per sample."""
        cdef _Custom info = self.customs[s]
        cdef Py_ssize_t e = self.ka[s], count = self.kb[s], b, k
        cdef double* out
        cdef double d
        cdef list xs
        for b in range(self._len(s)):
            xs = [self._val(self.edges[e + k])[b * self._stride(self.edges[e + k])]
                  for k in range(count)]
            try:                        # Python code: it cannot reach this Replay (busy)
                d = _real(info.forward(*xs), "the result of '%s'" % info.op)
            except BaseException as exc:
                _name_in_error(exc, info.op)
                raise
            out = self._val(s)
            out[b] = d
        return 0

    # -- reading the outputs ------------------------------------------------------
    cdef Py_ssize_t _output(self, object j, str what) except -1:
        cdef Py_ssize_t k = operator.index(j)
        if not 0 <= k < self.noutputs:
            raise IndexError("Replay.%s(): output %d of %d" % (what, k, self.noutputs))
        if not self.ready:
            raise RuntimeError("Replay.%s(): run forward() on the batch loaded first" % what)
        return self.output_slot[k]

    def values(self, j):
        """Output j's value for each sample of the batch, as a list of floats."""
        cdef Py_ssize_t s = self._output(j, "values"), b
        cdef list out = self._per_sample("values")     # the last GC point
        cdef double* v = self._val(s)
        for b in range(len(out)):
            out[b] = v[b * self._stride(s)]
        return out

    cdef list _per_sample(self, str what):
        """A list of one item per sample of the batch, for a method's result.
        Making it is a GC point: a gc callback may load another batch
        meanwhile, so the Replay is checked after it (and the list made again
        for the new batch).  The caller fills range(len(result)): the batch
        the Replay's buffers hold."""
        cdef list out
        cdef int attempt
        for attempt in range(3):
            out = _nones(self.B)
            if not self.ready:
                raise RuntimeError("Replay.%s(): run forward() on the batch loaded first" % what)
            if len(out) == self.B:
                return out
        raise RuntimeError("Replay.%s(): another batch was loaded each time the result was "
                           "made (by Python code that ran meanwhile)" % what)

    def sum(self, j):
        """Output j summed over the batch, left to right (as vsum adds)."""
        cdef Py_ssize_t s = self._output(j, "sum"), b
        cdef double* v = self._val(s)
        cdef Py_ssize_t st = self._stride(s)
        cdef double r = v[0]
        for b in range(1, self.B):
            r = r + v[b * st]
        return r

    def argmax(self, outputs):
        """For each sample, the position in `outputs` (output numbers) of the
        largest of those outputs (the first one on ties)."""
        cdef Py_ssize_t* slots = self._output_slots(outputs, "argmax")
        cdef list best
        cdef Py_ssize_t b
        try:
            best = self._per_sample("argmax")       # the last GC point
            for b in range(len(best)):
                best[b] = self._argmax_at(slots, b)
            return best
        finally:
            free(slots)

    def hits(self, outputs, labels):
        """How many samples' argmax over `outputs` is their label (labels[b]
        for sample b): a classifier's correct answers in the batch."""
        cdef list want = list(labels)
        cdef Py_ssize_t n = len(want), b, count = 0
        cdef Py_ssize_t* label = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
        cdef Py_ssize_t* slots = NULL
        cdef object number
        if label == NULL:
            raise MemoryError()
        try:
            for b in range(n):          # may run __index__: before anything is read
                number = operator.index(want[b])
                # a label no output position can be (negative, huge) is a miss
                label[b] = number if 0 <= number <= PY_SSIZE_T_MAX else -1
            slots = self._output_slots(outputs, "hits")
            if not self.ready:
                raise RuntimeError("Replay.hits(): run forward() on the batch loaded first")
            if n != self.B:
                raise ValueError("Replay.hits(): %d labels for a batch of %d" % (n, self.B))
            for b in range(n):
                if self._argmax_at(slots, b) == label[b]:
                    count += 1
            return count
        finally:
            free(label)
            free(slots)

    cdef Py_ssize_t* _output_slots(self, outputs, str what) except NULL:
        """The slots of the output numbers in `outputs` (at least one), in a
        malloc'd array the caller frees."""
        cdef list js = list(outputs)
        cdef Py_ssize_t m = len(js), k
        if m < 1:
            raise ValueError("Replay.%s() needs at least one output" % what)
        cdef Py_ssize_t* slots = <Py_ssize_t*>malloc((m + 1) * sizeof(Py_ssize_t))
        if slots == NULL:
            raise MemoryError()
        slots[0] = m
        try:
            for k in range(m):
                slots[k + 1] = self._output(js[k], what)
        except BaseException:
            free(slots)
            raise
        return slots

    cdef inline Py_ssize_t _argmax_at(self, const Py_ssize_t* slots, Py_ssize_t b) noexcept:
        """Sample b's argmax over the outputs in `slots` (its count first)."""
        cdef Py_ssize_t top = 0, k
        cdef double x, best = self._val(slots[1])[b * self._stride(slots[1])]
        for k in range(1, slots[0]):
            x = self._val(slots[k + 1])[b * self._stride(slots[k + 1])]
            if x > best:
                top, best = k, x
        return top

    # -- backward -----------------------------------------------------------------
    def backward(self, j=0, seed=1.0):
        """Add to every parameter's grad the derivative of
        seed * (output j of sample 0 + ... + of sample B-1)."""
        cdef Py_ssize_t root = self._output(j, "backward"), k, s
        cdef double g0 = _real(seed, "the seed")
        cdef tuple params = self.ps
        self._enter("backward")
        try:
            if not self.ready:
                raise RuntimeError("Replay.backward(): run forward() on the batch loaded first")
            # the grads to zero: every shared one (one pass), and the rows of
            # the batched slots that need one (interior: inputs need none)
            memset(self.sgrad, 0, self.nshared * sizeof(double))
            for k in range(self.ninterior):
                s = self.interior[k]
                if self.kind[s] & BATCHED and self.kind[s] & NEEDS_GRAD:
                    memset(self._grad(s), 0, self.B * sizeof(double))
            if self.kind[root] & NEEDS_GRAD:
                if self.kind[root] & BATCHED:
                    for k in range(self.B):
                        self._grad(root)[k] = g0
                else:                   # the same output B times
                    for k in range(self.B):
                        self.scratch[k] = g0
                    self._grad(root)[0] = batch_sum(self.scratch, self.B)
                for k in range(self.ninterior - 1, -1, -1):     # slots root, root - 1, ...
                    s = self.interior[k]
                    if s > root or not (self.kind[s] & NEEDS_GRAD):
                        continue
                    if not (self.kind[s] & LAYER):
                        self._backprop(s)
                    elif self.layers.starts_at(s):      # the whole layer, at its first member
                        self.layers.backward(self, s, root)
            self._add_param_grads(params)       # the arena again
        finally:
            self.busy = False

    cdef int _add_param_grads(self, tuple params) except -1:
        """Add the parameters' gradients into their grads, run by run.  The
        runs are brought up to date here, after the sweep (a custom node's
        Python code may have compacted the arena)."""
        cdef _Runs runs = self.param_runs
        cdef Py_ssize_t r, t
        runs.refresh(params, self.param_off)
        for r in range(runs.count):
            for t in range(runs.length[r]):
                A.grad[runs.node[r] + t] += self.sgrad[runs.at[r] + t]
        return 0

    cdef inline void _give(self, Py_ssize_t c, const double* t, Py_ssize_t n) noexcept:
        """Add the contributions t[0..n) to child c's grad: one per sample for a
        batched child, their batch_sum for a shared one."""
        cdef double* g = self._grad(c)
        cdef Py_ssize_t b
        if self.kind[c] & BATCHED:
            for b in range(n):
                g[b] += t[b]
        else:
            g[0] += batch_sum(t, n)

    cdef int _backprop(self, Py_ssize_t s) except -1:
        cdef uint8_t op = self.op[s]
        cdef Py_ssize_t n = self._len(s), b, k, e, count, c, a = self.ka[s]
        cdef double* g = self._grad(s)
        cdef double* out = self._val(s)
        cdef double* t = self.scratch
        cdef double* x
        cdef double* y
        cdef Py_ssize_t sx, sy
        if self.kind[s] & NEURON:
            self._neuron_backward(s)
        elif op == SUM:
            e, count = self.ka[s], self.kb[s]
            for k in range(count):
                if self.kind[self.edges[e + k]] & NEEDS_GRAD:
                    self._give(self.edges[e + k], g, n)
        elif op == DOT:                 # bias, then each weight and its input
            e, count = self.ka[s], (self.kb[s] - 1) // 2
            if self.kind[self.edges[e]] & NEEDS_GRAD:
                self._give(self.edges[e], g, n)
            for k in range(count):
                self._dot_pair(s, self.edges[e + 1 + k], self.edges[e + 1 + count + k], g, n)
                self._dot_pair(s, self.edges[e + 1 + count + k], self.edges[e + 1 + k], g, n)
        elif op == LSE:                 # d/dx_k = exp(x_k - out)
            e, count = self.ka[s], self.kb[s]
            for k in range(count):
                c = self.edges[e + k]
                if self.kind[c] & NEEDS_GRAD:
                    x, sx = self._val(c), self._stride(c)
                    for b in range(n):
                        t[b] = exp(x[b * sx] - out[b]) * g[b]
                    self._give(c, t, n)
        elif op == CUSTOM:
            self._custom_backward(s)
        else:
            x, sx = self._val(a), self._stride(a)
            y, sy = x, 0
            if self.kb[s] >= 0:
                y, sy = self._val(self.kb[s]), self._stride(self.kb[s])
            if self.kind[a] & NEEDS_GRAD:
                _map_dx(op, t, g, out, x, sx, y, sy, n)
                self._give(a, t, n)
            if self.kb[s] >= 0 and op != POWC and op != IPOWC and self.kind[self.kb[s]] & NEEDS_GRAD:
                _map_dy(op, t, g, out, x, sx, y, sy, n)
                self._give(self.kb[s], t, n)
        return 0

    cdef void _dot_pair(self, Py_ssize_t s, Py_ssize_t to, Py_ssize_t other,
                        const double* g, Py_ssize_t n) noexcept:
        """A DOT's contribution other[b] * g[b] to `to` (the general case)."""
        cdef Py_ssize_t b, so = self._stride(other)
        cdef double* o = self._val(other)
        if not (self.kind[to] & NEEDS_GRAD):
            return
        for b in range(n):
            self.scratch[b] = o[b * so] * g[b]
        self._give(to, self.scratch, n)

    cdef void _neuron_backward(self, Py_ssize_t s) noexcept:
        """A neuron: the bias gets batch_sum(g), each weight
        batch_sum(x_k[b] * g[b]), each input that needs it w_k * g[b]
        (neuron_weight_grads and neuron_input_grads in batch_kernels.h)."""
        cdef Py_ssize_t e = self.ka[s], n = (self.kb[s] - 1) // 2, B = self.B, k, w, xi
        cdef double* g = self._grad(s)
        if self.kind[self.edges[e]] & NEEDS_GRAD:
            self.sgrad[self.off[self.edges[e]]] += batch_sum(g, B)
        for k in range(n):
            w, xi = self.edges[e + 1 + k], self.edges[e + 1 + n + k]
            self.wbuf[k] = self.svals[self.off[w]]
            self.xrows[k] = self.bvals + self.off[xi] * self.stride
            self.gxrows[k] = self.bgrad + self.off[xi] * self.stride if self.kind[xi] & NEEDS_GRAD else NULL
        neuron_weight_grads(self.gwbuf, self.xrows, g, n, B)
        for k in range(n):
            w = self.edges[e + 1 + k]
            if self.kind[w] & NEEDS_GRAD:
                self.sgrad[self.off[w]] += self.gwbuf[k]
        neuron_input_grads(self.gxrows, self.wbuf, g, n, B)

    cdef int _custom_backward(self, Py_ssize_t s) except -1:
        """An autograd.function node: child k gets partial_k(*inputs) * g, per
        sample, in the order of the children."""
        cdef _Custom info = self.customs[s]
        cdef tuple partials = info.partials     # one per child: checked when recorded
        cdef Py_ssize_t e = self.ka[s], count = self.kb[s], n = self._len(s), b, k
        cdef list xs
        cdef double d
        for b in range(n):
            xs = [self._val(self.edges[e + k])[b * self._stride(self.edges[e + k])]
                  for k in range(count)]
            for k in range(count):
                if not (self.kind[self.edges[e + k]] & NEEDS_GRAD):
                    continue
                try:                    # Python code: it cannot reach this Replay (busy)
                    d = _real(partials[k](*xs),
                              "the partial derivative %d of '%s'" % (k, info.op))
                except BaseException as exc:
                    _name_in_error(exc, info.op)
                    raise
                self.scratch[(k + 1) * n + b] = d * self._grad(s)[b]
        for k in range(count):
            if self.kind[self.edges[e + k]] & NEEDS_GRAD:
                self._give(self.edges[e + k], self.scratch + (k + 1) * n, n)
        return 0


cdef Py_ssize_t _row_stride(Py_ssize_t B) noexcept:
    """Doubles from one row of B samples to the next: B rounded up to 8 (64
    bytes), and 8 more where that is a multiple of 64 doubles, so that rows
    the kernels read together do not fall on the same cache sets."""
    cdef Py_ssize_t stride = (B + 7) // 8 * 8
    return stride + 8 if stride % 64 == 0 else stride


cdef int _thread_count(object count) except -1:
    """A number of threads: an int from 1 to 1024."""
    if isinstance(count, bool) or not hasattr(type(count), "__index__"):
        raise TypeError("threads must be an int, not %s" % type(count).__name__)
    cdef object n = operator.index(count)
    if not 1 <= n <= 1024:
        raise ValueError("threads must be from 1 to 1024, not %r" % (n,))
    return n


cdef tuple _replay_values(object values, str what):
    """A private tuple of this engine's Values, or a clear error."""
    cdef tuple items = tuple(values)
    cdef Py_ssize_t k
    for k in range(len(items)):
        if not isinstance(items[k], Value):
            raise TypeError("Replay() takes Values as %s, not %s (item %d)"
                            % (what, type(items[k]).__name__, k))
        _check(<Value>items[k])
    return items


cdef int _replay_nodes(tuple values, Py_ssize_t* nodes, str what) except -1:
    """Each Value's node into nodes, or a clear error.  Runs no Python code."""
    cdef Py_ssize_t k, i = -2
    cdef PyObject* item
    for k in range(len(values)):
        item = PyTuple_GET_ITEM(values, k)
        i = _next_node(item, i)
        if i < 0:
            if not isinstance(<object>item, Value):
                raise TypeError("Replay() takes Values as %s, not %s (item %d)"
                                % (what, type(<object>item).__name__, k))
            _check(<Value>item)
            i = (<Value>item).idx
        nodes[k] = i
    return 0


cdef inline Py_ssize_t _mark(uint8_t* role, Py_ssize_t i) noexcept:
    """Mark node i reached (role 1); 1 if it was not yet."""
    if role[i] & 1:
        return 0
    role[i] |= 1
    return 1


cdef _Runs _runs_of_params(tuple values):
    """The runs of the Values' nodes (numbered 0, 1, ...), made as their
    nodes are read, or a clear error.  Runs no Python code."""
    cdef _Runs runs = _Runs()
    cdef Py_ssize_t k, i = -2, r = -1
    cdef PyObject* item
    runs._start(len(values))
    for k in range(len(values)):
        item = PyTuple_GET_ITEM(values, k)
        i = _next_node(item, i)
        if i < 0:
            if not isinstance(<object>item, Value):
                raise TypeError("Replay() takes Values as params, not %s (item %d)"
                                % (type(<object>item).__name__, k))
            _check(<Value>item)
            i = (<Value>item).idx
        r = runs._add(r, i, k)
    runs._finish(r)
    return runs


cdef int _replay_run_roles(uint8_t* role, _Runs runs, str what) except -1:
    """_replay_roles() for parameters given as runs (numbered 0, 1, ...)."""
    cdef Py_ssize_t r, t, i
    for r in range(runs.count):
        for t in range(runs.length[r]):
            i = runs.node[r] + t
            if A.op[i] != LEAF:
                raise ValueError("Replay(): %s[%d] is not a leaf: inputs and parameters are "
                                 "leaves (placeholders for the data, the model's weights)"
                                 % (what, runs.at[r] + t))
            if role[i] & 4:
                raise ValueError("Replay(): %s[%d] is listed twice" % (what, runs.at[r] + t))
            role[i] |= 4
    return 0


cdef int _replay_roles(uint8_t* role, const Py_ssize_t* nodes, Py_ssize_t n, uint8_t bit,
                       str what) except -1:
    """Mark inputs (or parameters), given their nodes: leaves, each listed
    once, in one list only."""
    cdef Py_ssize_t k, i
    for k in range(n):
        i = nodes[k]
        if A.op[i] != LEAF:
            raise ValueError("Replay(): %s[%d] is not a leaf: inputs and parameters are "
                             "leaves (placeholders for the data, the model's weights)" % (what, k))
        if role[i] & bit:
            raise ValueError("Replay(): %s[%d] is listed twice" % (what, k))
        if role[i] & 6:
            raise ValueError("Replay(): %s[%d] is both an input and a parameter" % (what, k))
        role[i] |= bit
    return 0


cdef tuple _layer_params(list rows_of, list biases_of, Py_ssize_t* sizes, Py_ssize_t nlayers,
                         tuple reuse):
    """Replay.layered()'s parameters in one tuple: each neuron's weights,
    then its bias, layer after layer (`reuse` where it holds those very
    Values); sizes[2l], sizes[2l+1] get layer l's neurons and inputs.  Reads
    the lists as they are; runs no Python code (the caller pauses the GC)."""
    cdef Py_ssize_t l, j, k, J, n, total = 0, p = 0
    cdef object rows, biases, row
    cdef PyObject* item
    for l in range(nlayers):
        rows, biases = rows_of[l], biases_of[l]
        J = PySequence_Fast_GET_SIZE(rows)
        if J == 0:
            raise ValueError("Replay.layered(): layer %d has no neurons" % l)
        if PySequence_Fast_GET_SIZE(biases) != J:
            raise ValueError("Replay.layered(): layer %d has %d weight rows but %d biases"
                             % (l, J, PySequence_Fast_GET_SIZE(biases)))
        for j in range(J):
            row = <object>PySequence_Fast_GET_ITEM(rows, j)
            if not _is_list_or_tuple(row):          # only if the rows changed meanwhile
                raise TypeError("Replay.layered(): layer %d's weight row %d is not a sequence"
                                % (l, j))
            n = PySequence_Fast_GET_SIZE(row)
            if j == 0 and l > 0 and n != sizes[2 * l - 2]:
                raise ValueError("Replay.layered(): layer %d's neurons take %d inputs, but the "
                                 "layer before has %d outputs" % (l, n, sizes[2 * l - 2]))
            if j == 0 and n == 0:
                raise ValueError("Replay.layered(): layer %d's neurons have no weights" % l)
            if j > 0 and n != sizes[2 * l + 1]:
                raise ValueError("Replay.layered(): layer %d's weight row %d has %d weights, "
                                 "row 0 has %d" % (l, j, n, sizes[2 * l + 1]))
            sizes[2 * l + 1] = n
        sizes[2 * l] = J
        total += J * (sizes[2 * l + 1] + 1)
    if reuse is not None and _holds_layer_params(reuse, rows_of, biases_of, sizes, nlayers, total):
        return reuse
    cdef tuple ps = PyTuple_New(total)
    for l in range(nlayers):
        rows, biases = rows_of[l], biases_of[l]
        for j in range(sizes[2 * l]):
            row = <object>PySequence_Fast_GET_ITEM(rows, j)
            for k in range(sizes[2 * l + 1]):
                item = PySequence_Fast_GET_ITEM(row, k)
                Py_INCREF(<object>item)
                PyTuple_SET_ITEM(ps, p, <object>item)
                p += 1
            item = PySequence_Fast_GET_ITEM(biases, j)
            Py_INCREF(<object>item)
            PyTuple_SET_ITEM(ps, p, <object>item)
            p += 1
    # (tracked by the GC, as CPython keeps any tuple of GC-capable objects: a
    # Value untracked now is tracked once it gets attributes, and a cycle
    # through them and this tuple must be collected)
    return ps


cdef bint _holds_layer_params(tuple ps, list rows_of, list biases_of, const Py_ssize_t* sizes,
                              Py_ssize_t nlayers, Py_ssize_t total) noexcept:
    """ps holds the layers' parameters in _layer_params' order: pointers
    compared, no Value read (runs no Python code)."""
    cdef Py_ssize_t l, j, k, p = 0
    cdef object rows, row
    if PyTuple_GET_SIZE(ps) != total:
        return False
    for l in range(nlayers):
        rows = rows_of[l]
        for j in range(sizes[2 * l]):
            row = <object>PySequence_Fast_GET_ITEM(rows, j)
            for k in range(sizes[2 * l + 1]):
                if PySequence_Fast_GET_ITEM(row, k) != PyTuple_GET_ITEM(ps, p):
                    return False
                p += 1
            if PySequence_Fast_GET_ITEM(biases_of[l], j) != PyTuple_GET_ITEM(ps, p):
                return False
            p += 1
    return True


# -- the elementwise kernels over a batch: each op's formula (kernels.pxi) per sample
cdef inline double _sum_of(const double* x, Py_ssize_t n) noexcept:
    cdef double r = x[0]
    cdef Py_ssize_t k
    for k in range(1, n):
        r = r + x[k]
    return r


cdef inline double _dot_of(const double* x, Py_ssize_t count) noexcept:
    """bias + w0*x0 + ... with x = bias, w0..w(n-1), x0..x(n-1)."""
    cdef Py_ssize_t n = (count - 1) // 2, k
    cdef double r = x[0]
    for k in range(n):
        r = r + x[1 + k] * x[1 + n + k]
    return r


cdef int _map(uint8_t op, double* out, const double* x, Py_ssize_t sx,
              const double* y, Py_ssize_t sy, Py_ssize_t n) except -1:
    """out[b] = op(x[b], y[b]) for each sample (a stride of 0: a shared operand)."""
    cdef Py_ssize_t b
    cdef forward_t forward
    if op == ADD:
        for b in range(n):
            out[b] = x[b * sx] + y[b * sy]
    elif op == SUB:
        for b in range(n):
            out[b] = x[b * sx] - y[b * sy]
    elif op == MUL:
        for b in range(n):
            out[b] = x[b * sx] * y[b * sy]
    elif op == RELU:
        for b in range(n):
            out[b] = relu_f(x[b * sx])
    elif _is_row(op):                   # unary.pxi
        forward = ROWS[op].forward
        for b in range(n):
            out[b] = forward(x[b * sx])
    else:
        for b in range(n):
            out[b] = _apply(op, x[b * sx], y[b * sy])
    return 0


cdef void _map_dx(uint8_t op, double* t, const double* g, const double* out,
                  const double* x, Py_ssize_t sx, const double* y, Py_ssize_t sy,
                  Py_ssize_t n) noexcept:
    """t[b] = the contribution to x (the first input) for each sample."""
    cdef Py_ssize_t b
    cdef double xb, yb, gb
    if op == RELU:          # a loop of its own: a select, not a branch (signs are random)
        for b in range(n):
            gb = g[b]
            t[b] = gb if out[b] > 0.0 else 0.0
        return
    if _is_row(op):                     # unary.pxi
        for b in range(n):
            t[b] = _chain(op, g[b], x[b * sx], out[b])
        return
    for b in range(n):
        xb, yb = x[b * sx], y[b * sy]
        if op == ADD or op == SUB:
            t[b] = g[b]
        elif op == MUL:
            t[b] = yb * g[b]
        elif op == DIV or op == IDIV:
            t[b] = g[b] / yb
        elif op == NEG:
            t[b] = negate(g[b])
        elif op == POW or op == POWC or op == IPOW or op == IPOWC:
            t[b] = pow_dx(g[b], xb, yb)
        elif op == RELU:
            t[b] = g[b] if out[b] > 0.0 else 0.0
        else:                           # ABS
            t[b] = abs_dx(g[b], xb)


cdef void _map_dy(uint8_t op, double* t, const double* g, const double* out,
                  const double* x, Py_ssize_t sx, const double* y, Py_ssize_t sy,
                  Py_ssize_t n) noexcept:
    """t[b] = the contribution to y (the second input) for each sample."""
    cdef Py_ssize_t b
    for b in range(n):
        if op == ADD:
            t[b] = g[b]
        elif op == SUB:
            t[b] = negate(g[b])
        elif op == MUL:
            t[b] = x[b * sx] * g[b]
        elif op == DIV or op == IDIV:
            t[b] = negate(out[b] * g[b] / y[b * sy])
        else:                           # POW, IPOW
            t[b] = pow_dy(g[b], x[b * sx], y[b * sy], out[b])
