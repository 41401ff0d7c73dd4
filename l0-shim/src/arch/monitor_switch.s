# The switch between the shim (ring 0) and a monitor (ring 3).
#
# monitor_enter(context) saves the shim's callee-saved registers, flags and
# stack pointer in the context, loads the monitor's registers from it and
# IRETs to ring 3. The monitor comes back through an interrupt or exception
# (its `int 0x80`, a fault, the budget timer): trap_common saves its
# registers, the Rust handler copies them into the context and calls
# monitor_resume_shim(context), which abandons the interrupt stack and
# returns from monitor_enter on the shim's own stack.
#
# Context layout (ring3::MonitorContext, repr(C)): 15 general registers
# (rax rbx rcx rdx rsi rdi rbp r8..r15) at 0..120, then rip 120, rsp 128,
# rflags 136, cs 144, ss 152, shim_rsp 160.

.section .text, "ax"
.code64

.global monitor_enter
monitor_enter:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    pushfq
    mov [rdi + 160], rsp
    push qword ptr [rdi + 152]
    push qword ptr [rdi + 128]
    push qword ptr [rdi + 136]
    push qword ptr [rdi + 144]
    push qword ptr [rdi + 120]
    mov rax, [rdi + 0]
    mov rbx, [rdi + 8]
    mov rcx, [rdi + 16]
    mov rdx, [rdi + 24]
    mov rsi, [rdi + 32]
    mov rbp, [rdi + 48]
    mov r8, [rdi + 56]
    mov r9, [rdi + 64]
    mov r10, [rdi + 72]
    mov r11, [rdi + 80]
    mov r12, [rdi + 88]
    mov r13, [rdi + 96]
    mov r14, [rdi + 104]
    mov r15, [rdi + 112]
    mov rdi, [rdi + 40]
    iretq

.global monitor_resume_shim
monitor_resume_shim:
    mov rsp, [rdi + 160]
    # The monitor may have left the x87/SSE control state anything (an
    # unmasked exception would then fault in the shim): back to defaults.
    fninit
    push 0x1f80
    ldmxcsr [rsp]
    add rsp, 8
    # The shim's flags as they were, whatever the monitor left (AC, DF).
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
