# Interrupt and exception entry stubs.
#
# Every vector gets a stub that makes the frame uniform (a zero error code
# where the CPU pushes none, then the vector number) and jumps to trap_common,
# which saves all general registers and the SSE state and calls
# `trap_dispatch(&mut TrapFrame)`. The SSE state is saved because the
# precompiled core library uses SSE registers freely.

.set TRAP_VECTORS, 256

.section .text.traps, "ax"
.code64

# The stubs are laid out in vector order, TRAP_STUB_SIZE bytes apart, so the
# IDT entry for vector v points at trap_stubs_start + v * TRAP_STUB_SIZE.
.balign 16
.global trap_stubs_start
trap_stubs_start:
.set vector, 0
.rept TRAP_VECTORS
    .balign 16
    # Exceptions that push an error code (SDM vol. 3A, table 6-1).
    .if (vector == 8) || (vector == 10) || (vector == 11) || (vector == 12) || (vector == 13) || (vector == 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    push 0
    .endif
    push vector
    jmp trap_common
    .set vector, vector + 1
.endr

trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    # From ring 3 (a monitor), GS base may be anything the monitor made it
    # (a segment load sets it from a descriptor): point it back at this
    # CPU's block, which lives in the word just above the CPU's frame at the
    # top of every interrupt stack (descriptors::IST_TOP_RESERVED).
    test qword ptr [rsp + 18 * 8], 3
    jz 1f
    mov rax, [rsp + 22 * 8]
    mov rdx, rax
    shr rdx, 32
    mov ecx, 0xc0000101
    wrmsr
1:
    mov rdi, rsp
    # 22 quadwords are on the stack and the CPU aligned it to 16 before
    # pushing its frame, so RSP stays 16-aligned for FXSAVE and the call.
    sub rsp, 512
    fxsave64 [rsp]
    cld
    call trap_dispatch
    fxrstor64 [rsp]
    add rsp, 512
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

