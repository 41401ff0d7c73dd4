# Boot trampoline: multiboot2 header, 32-bit entry, early page tables, the
# switch to long mode and the jump into the higher half.
#
# The loader enters in 32-bit protected mode with paging off (EAX = multiboot2
# magic, EBX = physical address of the boot information). This code runs at
# its physical address; everything else is linked at KERNEL_VIRT_OFFSET.
#
# Early page tables (replaced by the shim's own as soon as it has a frame
# allocator):
#   PML4[0]   -> first 4 GiB identity, 2 MiB pages (only for the jump below)
#   PML4[256] -> the same 4 GiB at 0xffff800000000000 (the direct map)
#   PML4[511] -> PDPT[510] -> first 1 GiB at 0xffffffff80000000 (the kernel)

.set MULTIBOOT2_MAGIC,        0xe85250d6
.set MULTIBOOT2_BOOT_MAGIC,   0x36d76289
.set KERNEL_VIRT_OFFSET,      0xffffffff80000000
.set COM1,                    0x3f8

.section .multiboot2_header, "a"
.balign 8
mb2_header_start:
    .long MULTIBOOT2_MAGIC
    .long 0                                   # architecture: i386 protected mode
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (MULTIBOOT2_MAGIC + (mb2_header_end - mb2_header_start))
    # end tag
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

.section .boot.text, "ax"
.code32
.global boot_entry32
boot_entry32:
    cli
    cld
    mov esp, offset boot_stack32_top
    mov edi, eax
    mov esi, ebx

    cmp edi, MULTIBOOT2_BOOT_MAGIC
    jne .Lnot_multiboot2

    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb .Lno_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, (1 << 29)
    jz .Lno_long_mode
    test edx, (1 << 20)
    jz .Lno_nx

    # The tables live in NOLOAD memory: clear them first.
    push edi
    mov edi, offset boot_tables_start
    mov ecx, offset boot_tables_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd
    pop edi

    mov eax, offset boot_pdpt_low
    or eax, 0x3
    mov [boot_pml4], eax
    mov [boot_pml4 + 256 * 8], eax
    mov eax, offset boot_pdpt_high
    or eax, 0x3
    mov [boot_pml4 + 511 * 8], eax

    xor ecx, ecx
1:  mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt_low + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb 1b

    mov eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt_high + 510 * 8], eax

    xor ecx, ecx
2:  mov eax, ecx
    shl eax, 21
    or eax, 0x83                             # present, writable, 2 MiB page
    mov [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jb 2b

    # PAE, and SSE enabled because the precompiled core library uses it.
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax

    mov ecx, 0xc0000080                       # IA32_EFER: long mode, NX
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr

    mov eax, cr0
    and eax, ~(1 << 2)                        # no x87 emulation
    or eax, (1 << 31) | (1 << 16) | (1 << 1) | 1   # paging, write-protect, MP, PE
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    # A far return into the 64-bit code segment (register push: LLVM
    # would encode `push offset` as a 16-bit push here).
    push 0x08
    mov eax, offset boot_entry64
    push eax
    retf

# Errors before long mode: say so on COM1 and stop.
.Lnot_multiboot2:
    mov esi, offset msg_not_multiboot2
    jmp .Lfatal32
.Lno_long_mode:
    mov esi, offset msg_no_long_mode
    jmp .Lfatal32
.Lno_nx:
    mov esi, offset msg_no_nx
.Lfatal32:
    mov dx, COM1 + 5
    in al, dx
    test al, 0x20
    jz .Lfatal32
    lodsb
    test al, al
    jz .Lhalt32
    mov dx, COM1
    out dx, al
    jmp .Lfatal32
.Lhalt32:
    hlt
    jmp .Lhalt32

.code64
boot_entry64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    # Leaving 32-bit mode leaves the upper register halves undefined.
    mov r12d, edi
    mov r13d, esi

    mov rdi, offset __bss_start
    mov rcx, offset __bss_end
    sub rcx, rdi
    shr rcx, 3
    xor eax, eax
    rep stosq

    mov rsp, offset boot_stack_top
    xor ebp, ebp
    mov rdi, r12
    mov rsi, r13
    mov rax, offset kernel_entry
    call rax
3:  cli
    hlt
    jmp 3b

.section .boot.data, "a"
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff                  # 64-bit code
    .quad 0x00cf92000000ffff                  # data
boot_gdt_end:
boot_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
msg_not_multiboot2:
    .asciz "Matryoshka: not started by a multiboot2 loader (use GRUB's multiboot2 command)\r\n"
msg_no_long_mode:
    .asciz "Matryoshka: this CPU lacks 64-bit long mode\r\n"
msg_no_nx:
    .asciz "Matryoshka: this CPU lacks the NX (execute-disable) bit\r\n"

.section .boot.bss, "aw", @nobits
.balign 4096
boot_tables_start:
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4 * 4096
boot_tables_end:
                .skip 4096
boot_stack32_top:

.section .bss
.balign 4096
# Left unmapped by the shim's page tables, so an overflow faults.
.global boot_stack_guard
boot_stack_guard:
    .skip 4096
.global boot_stack_bottom
boot_stack_bottom:
    .skip 64 * 1024
.global boot_stack_top
boot_stack_top:

# The bootstrap CPU's interrupt stacks (one per IST slot, see
# descriptors.rs), each above its own unmapped guard page. They live here
# because traps must work before the heap exists.
.set IST_STACK_SIZE, 16 * 1024
.set IST_STACK_COUNT, 5
.balign 4096
.global boot_cpu_interrupt_stacks
boot_cpu_interrupt_stacks:
.rept IST_STACK_COUNT
    .skip 4096
    .skip IST_STACK_SIZE
.endr
.global boot_cpu_interrupt_stacks_end
boot_cpu_interrupt_stacks_end:
