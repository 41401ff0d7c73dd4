# Multiboot (version 1) header and the 32-bit entry.
#
# The loader enters multiboot_entry in 32-bit protected mode with paging
# off, EAX = 0x2BADB002 and EBX = the physical address of the boot
# information. This code clears .bss, builds page tables that identity-map
# the first 4 GiB with 2 MiB pages, turns on PAE, long mode, paging and SSE
# (the precompiled core library uses SSE registers), and calls
# kernel_main(multiboot_info, efer_nxe) in 64-bit mode on the boot stack.
# Anything it cannot do is said on COM1, after the kernel's
# BOOT_MESSAGE_PREFIX, and ends the run through the debug-exit port with
# status 2.

.set MULTIBOOT_MAGIC,            0x1BADB002
.set MULTIBOOT_PAGE_ALIGN,       1 << 0       # modules on page boundaries
.set MULTIBOOT_MEMORY_INFO,      1 << 1       # mem_lower/upper and the memory map
.set MULTIBOOT_FLAGS,            MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO
.set MULTIBOOT_BOOTLOADER_MAGIC, 0x2BADB002

.set CR0_PE,            1 << 0
.set CR0_MP,            1 << 1                # WAIT/FWAIT honour TS
.set CR0_EM,            1 << 2                # x87 emulation: must be off for SSE
.set CR0_NE,            1 << 5                # native x87 error reporting
.set CR0_WP,            1 << 16
.set CR0_PG,            1 << 31
.set CR4_PAE,           1 << 5
.set CR4_OSFXSR,        1 << 9                # FXSAVE/FXRSTOR and SSE
.set CR4_OSXMMEXCPT,    1 << 10               # SIMD exceptions as #XM
.set MSR_EFER,          0xC0000080
.set EFER_LME,          1 << 8
.set EFER_NXE,          1 << 11
.set CPUID_EXT_NX,      1 << 20
.set CPUID_EXT_LM,      1 << 29
.set PAGE_PRESENT_WRITABLE, 0x3
.set PAGE_LARGE,        0x80

.set COM1_DATA,         0x3F8
.set COM1_LSR,          0x3FD
.set LSR_THR_EMPTY,     0x20
.set DEBUG_EXIT_PORT,   0xF4
.set EXIT_BOOT_FAILURE, 2

.set CODE64_SELECTOR,   0x08
.set DATA_SELECTOR,     0x10
.set CODE32_SELECTOR,   0x18
.set CR0_CD_NW,         0x60000000            # caches off, as INIT leaves them

# Paging on the identity map, long mode with the EFER bits at
# ap_efer_bits, SSE: the BSP's way and every AP's, from 32-bit code.
.macro ENTER_LONG_MODE
    mov eax, cr4
    or eax, CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT
    mov cr4, eax
    mov eax, offset identity_pml4
    mov cr3, eax
    mov ecx, MSR_EFER
    rdmsr
    or eax, [ap_efer_bits]
    wrmsr
    mov eax, cr0
    and eax, ~(CR0_EM | CR0_CD_NW)
    or eax, CR0_PG | CR0_WP | CR0_NE | CR0_MP | CR0_PE
    mov cr0, eax
.endm

# The segment registers of 64-bit code: flat data, FS and GS null.
.macro LOAD_DATA_SEGMENTS_64
    mov ax, DATA_SELECTOR
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
.endm

.section .multiboot_header, "a"
.balign 4
    .long MULTIBOOT_MAGIC
    .long MULTIBOOT_FLAGS
    .long 0x100000000 - (MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

.section .boot.text, "ax"
.code32
.global multiboot_entry
multiboot_entry:
    cli
    cld
    cmp eax, MULTIBOOT_BOOTLOADER_MAGIC
    jne .Lnot_multiboot
    mov esi, ebx                              # ESI: boot information, kept to the end

    # .bss holds the page tables and the stack; loaders zero it, but a
    # kernel that relies on that breaks under the first one that does not.
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd
    mov esp, offset boot_stack_top

    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb .Lno_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, CPUID_EXT_LM
    jz .Lno_long_mode
    mov ebp, EFER_LME                         # EBP: the EFER bits to set
    test edx, CPUID_EXT_NX
    jz 1f
    or ebp, EFER_NXE
1:
    mov [ap_efer_bits], ebp                   # the APs set the same (see ap_entry32)
    # PML4[0] -> PDPT; PDPT[0..4] -> four page directories; each of their
    # 2048 entries maps 2 MiB at the same physical address.
    mov eax, offset identity_pdpt
    or eax, PAGE_PRESENT_WRITABLE
    mov [identity_pml4], eax
    xor ecx, ecx
2:  mov eax, ecx
    shl eax, 12
    add eax, offset identity_directories
    or eax, PAGE_PRESENT_WRITABLE
    mov [identity_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb 2b
    xor ecx, ecx
3:  mov eax, ecx
    shl eax, 21
    or eax, PAGE_PRESENT_WRITABLE | PAGE_LARGE
    mov [identity_directories + ecx * 8], eax
    inc ecx
    cmp ecx, 4 * 512
    jb 3b

    ENTER_LONG_MODE

    # Now in compatibility mode: a far jump through the new GDT's 64-bit
    # code segment enters long mode proper.
    lgdt [boot_gdt_pointer]
    jmp fword ptr [long_mode_target]

.Lnot_multiboot:
    mov edi, offset message_not_multiboot
    jmp .Lfail32
.Lno_long_mode:
    mov edi, offset message_no_long_mode
.Lfail32:
    # The loader leaves ESP undefined, and this may run before it is set.
    mov esp, offset boot_stack_top
    mov esi, offset BOOT_MESSAGE_PREFIX       # the kernel's, e.g. "l1-test: "
    call .Lprint32
    mov esi, edi
    call .Lprint32
    jmp .Lexit32

# Writes the NUL-terminated string at ESI to COM1, polling the transmitter.
.Lprint32:
    mov dx, COM1_LSR
    in al, dx
    test al, LSR_THR_EMPTY
    jz .Lprint32
    lodsb
    test al, al
    jz 1f
    mov dx, COM1_DATA
    out dx, al
    jmp .Lprint32
1:  ret

.Lexit32:
    mov eax, EXIT_BOOT_FAILURE
    mov dx, DEBUG_EXIT_PORT
    out dx, eax
.Lhalt32:
    hlt
    jmp .Lhalt32

.code64
long_mode_entry:
    LOAD_DATA_SEGMENTS_64
    mov rsp, offset boot_stack_top
    xor ebp, ebp                              # ends frame-pointer walks
    # Writing a 32-bit register clears the upper half, which mode
    # switches leave undefined.
    mov edi, esi                              # multiboot_info
    xor esi, esi
    mov ecx, MSR_EFER                         # efer_nxe, as set above
    rdmsr
    test eax, EFER_NXE
    setnz sil
    call kernel_main
.Lhalt64:
    cli
    hlt
    jmp .Lhalt64

# The application processors' start (the `smp` check). A SIPI starts an
# AP in real mode at a page below 1 MiB, where the kernel copies the code
# from ap_trampoline_start to ap_trampoline_end; it must therefore not
# depend on where it runs: it loads the boot GDT through a pointer inside
# the copy (DS = CS) and leaves real mode with a far jump to an absolute
# address. From there the AP follows the BSP's path: the same page tables
# and EFER bits, long mode, then ap_main on the stack the BSP set in
# ap_stack_top.
.code16
.global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    mov ax, cs
    mov ds, ax
    # lgdt with a 32-bit operand (0x66): the base may lie above 16 MiB.
    .byte 0x66, 0x0f, 0x01, 0x16
    .short ap_trampoline_gdt_pointer - ap_trampoline_start
    mov eax, cr0
    or eax, CR0_PE
    mov cr0, eax
    # jmp far CODE32_SELECTOR:ap_entry32, with a 32-bit offset (0x66 0xEA).
    .byte 0x66, 0xea
    .long ap_entry32
    .short CODE32_SELECTOR
.balign 4
ap_trampoline_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
.global ap_trampoline_end
ap_trampoline_end:

.code32
ap_entry32:
    mov ax, DATA_SELECTOR
    mov ds, ax
    mov es, ax
    mov ss, ax
    ENTER_LONG_MODE
    jmp fword ptr [ap_long_mode_target]

.code64
ap_long_mode_entry:
    LOAD_DATA_SEGMENTS_64
    mov rsp, [ap_stack_top]
    xor ebp, ebp
    call ap_main
.Lap_halt:
    cli
    hlt
    jmp .Lap_halt

# Kernels that never start an AP need no ap_main of their own: this weak
# one only stops the processor.
.weak ap_main
ap_main:
    cli
    hlt
    jmp ap_main

.section .rodata
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF                  # 0x08: 64-bit code, ring 0
    .quad 0x00CF92000000FFFF                  # 0x10: flat data
    .quad 0x00CF9A000000FFFF                  # 0x18: 32-bit code (the APs' way up)
boot_gdt_end:
boot_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
long_mode_target:
    .long long_mode_entry
    .short CODE64_SELECTOR
ap_long_mode_target:
    .long ap_long_mode_entry
    .short CODE64_SELECTOR
message_not_multiboot:
    .asciz "FATAL: not started by a multiboot loader (EAX is not 0x2BADB002)\n"
message_no_long_mode:
    .asciz "FATAL: this CPU has no 64-bit long mode\n"

.section .bss
.balign 4096
identity_pml4:        .skip 4096
identity_pdpt:        .skip 4096
identity_directories: .skip 4 * 4096

.balign 16
boot_stack_bottom:    .skip 64 * 1024
.global boot_stack_top
boot_stack_top:

# Interrupt stacks (see descriptors.rs): every exception and interrupt
# runs on one, because the precompiled core library uses the red zone
# below the stack pointer, which a push on the current stack would clobber.
.balign 16
                      .skip 16 * 1024
.global interrupt_stack_top
interrupt_stack_top:
                      .skip 16 * 1024
.global double_fault_stack_top
double_fault_stack_top:

# The APs' stacks (see descriptors.rs): a kernel, an interrupt and a
# double-fault stack of 16 KiB each, for up to three APs.
.balign 16
.global ap_stacks
ap_stacks:            .skip 3 * 3 * 16 * 1024
ap_efer_bits:         .skip 4
.balign 8
.global ap_stack_top
ap_stack_top:         .skip 8
