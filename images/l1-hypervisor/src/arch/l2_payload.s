# The L2 payload: the code the L1 hypervisor runs as its guest, in 64-bit
# mode on page tables, descriptor tables and a stack that L1 builds in L2's
# memory (layout.rs). It lives in pages of its own (.l2_payload, see
# linker.ld), which EPT maps into L2 for reading and executing only.
#
# Each l2_<check> routine is entered by L1 with a fresh stack, RFLAGS = 2
# (interrupts off) and zeroed registers. It provokes the exits its check is
# about, verifies what L1 did in answer (L1 verifies the exits themselves),
# and ends with VMCALL: RAX = DONE, or RAX = FAIL with RBX = the step that
# failed, RCX = what it expected and RDX = what it saw. The {{name}} operands
# are constants from protocol.rs and layout.rs.
#
# The payload uses no x87/SSE state, so L1 does not switch it.

.section .l2_payload, "ax"
.code64

# L2_EXPECT actual, expected, step: report step `step` as failed unless
# `actual` (a register other than RBX, RCX, RDX) equals `expected`.
.macro L2_EXPECT actual, expected, step
    mov rcx, \expected
    cmp \actual, rcx
    je .Ll2_expect_ok_\@
    mov rdx, \actual
    mov ebx, \step
    jmp l2_fail
.Ll2_expect_ok_\@:
.endm

# L2_EXPECT_EVENT: the event handlers have run `count` times, the last
# time for `vector` with return address `site` + `offset` (steps
# step..step+2). Macro arguments are separated by spaces: none inside one.
.macro L2_EXPECT_EVENT count, vector, site, offset, step
    mov rax, qword ptr [{mailbox} + {event_count}]
    L2_EXPECT rax, \count, \step
    mov rax, qword ptr [{mailbox} + {event_vector}]
    L2_EXPECT rax, \vector, \step+1
    mov rax, qword ptr [{mailbox} + {event_rip}]
    lea rsi, [\site + \offset]
    L2_EXPECT rax, rsi, \step+2
.endm

l2_done:
    mov eax, {done}
    vmcall
    ud2                                       # L1 never resumes a finished routine

l2_fail:
    mov eax, {fail}
    vmcall
    ud2

# launch: the first VM entry lands here. L1 hides CR4.VMXE behind the CR4
# read shadow; paging and protection are on.
.global l2_launch
l2_launch:
    mov rax, cr4
    and rax, {cr4_vmxe}
    L2_EXPECT rax, 0, 1
    mov rax, cr0
    mov rsi, {cr0_pg_pe}
    and rax, rsi
    L2_EXPECT rax, {cr0_pg_pe}, 2
    jmp l2_done

# registers: every general register and CR2 carry a pattern through a
# VMCALL; L1 answers with their complements (CR2 stays).
.global l2_registers
l2_registers:
    mov rax, {pattern} + {cr2_index}
    mov cr2, rax
    mov rbx, {pattern} + 1
    mov rcx, {pattern} + 2
    mov rdx, {pattern} + 3
    mov rsi, {pattern} + 4
    mov rdi, {pattern} + 5
    mov rbp, {pattern} + 6
    mov r8,  {pattern} + 8
    mov r9,  {pattern} + 9
    mov r10, {pattern} + 10
    mov r11, {pattern} + 11
    mov r12, {pattern} + 12
    mov r13, {pattern} + 13
    mov r14, {pattern} + 14
    mov r15, {pattern} + 15
    mov eax, {report_registers}
    vmcall
    # Register n goes to [rsp + 8n] before L2_EXPECT borrows RBX/RCX/RDX.
    sub rsp, 128
    mov [rsp + 8 * 1], rbx
    mov [rsp + 8 * 2], rcx
    mov [rsp + 8 * 3], rdx
    mov [rsp + 8 * 4], rsi
    mov [rsp + 8 * 5], rdi
    mov [rsp + 8 * 6], rbp
    mov [rsp + 8 * 8], r8
    mov [rsp + 8 * 9], r9
    mov [rsp + 8 * 10], r10
    mov [rsp + 8 * 11], r11
    mov [rsp + 8 * 12], r12
    mov [rsp + 8 * 13], r13
    mov [rsp + 8 * 14], r14
    mov [rsp + 8 * 15], r15
.irp n, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15
    mov rax, [rsp + 8 * \n]
    L2_EXPECT rax, ~({pattern}+\n), \n
.endr
    mov rax, cr2
    L2_EXPECT rax, {pattern}+{cr2_index}, {cr2_index}
    add rsp, 128
    jmp l2_done

# cpuid: L1 answers the test leaf with its own values, zero-extended into
# the 64-bit registers; the subleaf's upper half must not matter.
.global l2_cpuid
l2_cpuid:
    mov eax, {cpuid_leaf}
    mov rcx, 0xffffffff00000000 + {cpuid_subleaf}
    mov rbx, -1
    mov rdx, -1
    cpuid
    mov r8, rax
    mov r9, rbx
    mov r10, rcx
    mov r11, rdx
    L2_EXPECT r8, {cpuid_eax}, 1
    L2_EXPECT r9, {cpuid_ebx}, 2
    L2_EXPECT r10, {cpuid_ecx}, 3
    L2_EXPECT r11, {cpuid_edx}, 4
    jmp l2_done

# cpuid-loop: many CPUIDs in a row, each answered by L1: the nested
# round trip, timed by L1. Every answer is checked.
.global l2_cpuid_loop
l2_cpuid_loop:
    mov r12d, {cpuid_loop_count}
.Ll2_cpuid_loop_next:
    mov eax, {cpuid_leaf}
    mov ecx, {cpuid_subleaf}
    cpuid
    mov r8, rax
    L2_EXPECT r8, {cpuid_eax}, 1
    dec r12
    jnz .Ll2_cpuid_loop_next
    jmp l2_done

# io: four accesses of each size and port form. IN AX keeps RAX's upper
# 48 bits; IN EAX zero-extends into RAX.
.global l2_io
l2_io:
    mov al, {out_byte_value}
    out {out_byte_port}, al
    mov dx, {in_word_port}
    mov rax, -1
    in ax, dx
    mov rsi, rax
    L2_EXPECT rsi, 0xffffffffffff0000+{in_word_answer}, 1
    mov dx, {out_dword_port}
    mov eax, {out_dword_value}
    out dx, eax
    mov rax, -1
    in eax, {in_dword_port}
    mov rsi, rax
    L2_EXPECT rsi, {in_dword_answer}, 2
    jmp l2_done

# hlt: L1 sees the HLT and moves on past it.
.global l2_hlt
l2_hlt:
    hlt
    jmp l2_done

# exceptions: L1 takes #UD and #BP through the exception bitmap. It skips
# the UD2 (nothing reaches L2's IDT) and reflects the #BP back into L2.
.global l2_exceptions
.global l2_ud2_site
.global l2_int3_site
l2_exceptions:
l2_ud2_site:
    ud2
    mov rax, qword ptr [{mailbox} + {event_count}]
    L2_EXPECT rax, 0, 1
l2_int3_site:
    int3
    L2_EXPECT_EVENT 1, 3, l2_int3_site, 1, 2
    jmp l2_done

# injection: L1 injects #GP with an error code, then an external interrupt,
# each after the VMCALL that asks for it. An external interrupt can only be
# injected while RFLAGS.IF = 1 (SDM 27.3.1.4), so L2 enables interrupts
# first; the MOV between STI and VMCALL ends the STI shadow, which would
# block the injection too. L1 masks the PIC: nothing else arrives.
.global l2_injection
.global l2_after_gp_request
.global l2_after_interrupt_request
l2_injection:
    mov eax, {inject_gp}
    vmcall
l2_after_gp_request:
    L2_EXPECT_EVENT 1, 13, l2_after_gp_request, 0, 1
    mov rax, qword ptr [{mailbox} + {event_error_code}]
    L2_EXPECT rax, {gp_error_code}, 4
    sti
    mov eax, {inject_interrupt}
    vmcall
l2_after_interrupt_request:
    cli
    L2_EXPECT_EVENT 2, {interrupt_vector}, l2_after_interrupt_request, 0, 5
    jmp l2_done

# ept-violation: a read of a page EPT does not map, then a write to a page
# it maps read-only. L1 maps each in and L2's access completes.
.global l2_ept_violation
.global l2_hole_read_site
.global l2_read_only_write_site
l2_ept_violation:
l2_hole_read_site:
    mov rax, qword ptr [{ept_hole} + {hole_offset}]
    L2_EXPECT rax, {fill_pattern}, 1
    mov rax, {write_pattern}
l2_read_only_write_site:
    mov qword ptr [{read_only} + {read_only_offset}], rax
    mov rsi, qword ptr [{read_only} + {read_only_offset}]
    L2_EXPECT rsi, {write_pattern}, 2
    jmp l2_done

# preemption-timer: spin until L1 sets the mailbox flag; RSI counts the
# rounds.
.global l2_timer
.global l2_timer_spin
.global l2_timer_spin_end
l2_timer:
    xor esi, esi
l2_timer_spin:
    inc rsi
    cmp qword ptr [{mailbox} + {stop_spinning}], 0
    je l2_timer_spin
l2_timer_spin_end:
    jmp l2_done

# invept: L1 moves the remapped page between two host pages, invalidating
# with INVEPT each time; L2 must see the new page at once.
.global l2_invept
l2_invept:
    mov rax, qword ptr [{remapped}]
    L2_EXPECT rax, {remap_pattern_a}, 1
    mov eax, {remap}
    vmcall
    mov rax, qword ptr [{remapped}]
    L2_EXPECT rax, {remap_pattern_b}, 2
    mov eax, {remap}
    vmcall
    mov rax, qword ptr [{remapped}]
    L2_EXPECT rax, {remap_pattern_a}, 3
    jmp l2_done

# L2's event handlers: one stub per vector up to {{last_vector}} (a zero
# where the CPU pushes no error code, then the vector), all recording into
# the mailbox and returning with IRETQ.
.macro L2_EVENT_STUB vector, cpu_pushes_error_code
l2_event_\vector:
.if \cpu_pushes_error_code == 0
    push 0
.endif
    push \vector
    jmp l2_event_common
.endm

.irp vector, 0, 1, 2, 3, 4, 5, 6, 7, 9, 15, 16, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64
L2_EVENT_STUB \vector, 0
.endr
.irp vector, 8, 10, 11, 12, 13, 14, 17, 21, 29, 30
L2_EVENT_STUB \vector, 1
.endr

l2_event_common:
    push rax
    mov rax, [rsp + 8]                        # the vector
    mov qword ptr [{mailbox} + {event_vector}], rax
    mov rax, [rsp + 16]                       # the error code, or 0
    mov qword ptr [{mailbox} + {event_error_code}], rax
    mov rax, [rsp + 24]                       # where the event interrupted
    mov qword ptr [{mailbox} + {event_rip}], rax
    inc qword ptr [{mailbox} + {event_count}]
    pop rax
    add rsp, 16
    iretq

# The stubs' addresses by vector, for the L2 IDT that L1 builds.
.section .rodata.l2_event_stubs, "a"
.balign 8
.global l2_event_stubs
l2_event_stubs:
.irp vector, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64
    .quad l2_event_\vector
.endr
