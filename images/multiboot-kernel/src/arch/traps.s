# Entry stubs for the 32 exceptions, the 16 PIC interrupts and the IPI
# vector (0x30) of the smp check.
#
# Each stub makes the stack look the same (a zero pushed where the CPU
# pushes no error code, then the vector) and jumps to trap_common, which
# saves the general registers and the SSE state (the handler is Rust and
# may use XMM registers that the interrupted code was using), calls
# trap_dispatch(&mut TrapFrame), and returns with IRETQ. The handler may
# change the saved RIP to resume somewhere else.
#
# Every gate uses an IST stack, which the CPU aligns to 16 bytes before it
# pushes SS, RSP, RFLAGS, CS and RIP. With the error code, the vector and
# the 15 registers that is 176 bytes, so RSP stays 16-byte aligned for
# FXSAVE and for the call.

.macro TRAP_STUB vector, cpu_pushes_error_code
.balign 16
trap_stub_\vector:
.if \cpu_pushes_error_code == 0
    push 0
.endif
    push \vector
    jmp trap_common
.endm

.section .text
TRAP_STUB 0, 0    # #DE divide error
TRAP_STUB 1, 0    # #DB debug
TRAP_STUB 2, 0    # NMI
TRAP_STUB 3, 0    # #BP breakpoint
TRAP_STUB 4, 0    # #OF overflow
TRAP_STUB 5, 0    # #BR bound range
TRAP_STUB 6, 0    # #UD invalid opcode
TRAP_STUB 7, 0    # #NM device not available
TRAP_STUB 8, 1    # #DF double fault
TRAP_STUB 9, 0    # coprocessor segment overrun
TRAP_STUB 10, 1   # #TS invalid TSS
TRAP_STUB 11, 1   # #NP segment not present
TRAP_STUB 12, 1   # #SS stack fault
TRAP_STUB 13, 1   # #GP general protection
TRAP_STUB 14, 1   # #PF page fault
TRAP_STUB 15, 0   # reserved
TRAP_STUB 16, 0   # #MF x87 error
TRAP_STUB 17, 1   # #AC alignment check
TRAP_STUB 18, 0   # #MC machine check
TRAP_STUB 19, 0   # #XM SIMD exception
TRAP_STUB 20, 0   # #VE virtualization exception
TRAP_STUB 21, 1   # #CP control protection
TRAP_STUB 22, 0
TRAP_STUB 23, 0
TRAP_STUB 24, 0
TRAP_STUB 25, 0
TRAP_STUB 26, 0
TRAP_STUB 27, 0
TRAP_STUB 28, 0   # #HV hypervisor injection
TRAP_STUB 29, 1   # #VC VMM communication
TRAP_STUB 30, 1   # #SX security
TRAP_STUB 31, 0
.irp vector, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47
TRAP_STUB \vector, 0   # PIC IRQ (vector - 32)
.endr
TRAP_STUB 48, 0   # inter-processor interrupt (smp check)

trap_common:
    push rax
    push rcx
    push rdx
    push rbx
    push rbp
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp                              # &mut TrapFrame
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
    pop rdi
    pop rsi
    pop rbp
    pop rbx
    pop rdx
    pop rcx
    pop rax
    add rsp, 16                               # vector and error code
    iretq

# The stubs' addresses, indexed by vector, for the IDT.
.section .rodata
.balign 8
.global trap_stub_table
trap_stub_table:
.irp vector, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48
    .quad trap_stub_\vector
.endr
