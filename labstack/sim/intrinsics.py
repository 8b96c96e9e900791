"""Three machine operations numba does not spell: a float's bits, atomics and a spin hint.

Why they are needed: the lattice kernel (:mod:`labstack.sim.lattice_kernels`) builds
``2**n`` from an integer exponent (a bit cast, so its ``exp2`` vectorises instead of
calling libm), and its threads hand colour phases to each other through two shared
counters (an atomic add and an acquire load), spinning politely in between.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}


@intrinsic
def int32_as_float32(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is ``bits`` (an int32), no conversion."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def _item_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


@intrinsic
def atomic_add(typingctx, array, index, value):
    """``array[index] += value`` as one sequentially consistent step; returns the old value.

    ``array`` must be an int64 array.
    """
    sig = types.int64(array, index, value)

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, array, index):
    """``array[index]`` read with acquire ordering (int64): later reads see what preceded its store."""
    sig = types.int64(array, index)

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def cpu_relax(typingctx):
    """Tell the core it is in a spin-wait (x86 ``pause``; nothing elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def thread_nap(typingctx, microseconds):
    """Sleep ``microseconds`` (int64; POSIX ``usleep``, nothing on Windows).

    For a spin-wait that has waited long: the thread it waits for has probably lost its
    core to another process (a shared machine). Spinning or yielding keeps this core
    busy, so the scheduler does not move the waited-for thread here; sleeping idles
    the core, and the scheduler runs that thread on it.
    """
    sig = types.void(microseconds)

    def codegen(context, builder, signature, args):
        if platform.system() != "Windows":
            fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32)])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "usleep")
            builder.call(fn, [builder.trunc(args[0], ir.IntType(32))])
        return context.get_dummy_value()

    return sig, codegen
