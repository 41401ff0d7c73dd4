# A minimal guest for selftest=vmx-smoke: flat 32-bit code, position
# independent, that prints a line on COM1, executes CPUID and ends through
# the debug-exit port. It proves VM entry, exits and resumes end to end.

.section .rodata.vmx_smoke_guest, "a"
.global vmx_smoke_guest_start
.global vmx_smoke_guest_end
vmx_smoke_guest_start:
.code32
    # Multiboot-style: ESP is undefined at entry, so set up a stack first.
    mov esp, 0x90000
    # CALL pushes the address of the bytes after it: the message.
    call 1f
    .asciz "hello from VMX non-root; CPUID vendor starts with "
1:  pop esi
2:  lodsb
    test al, al
    jz 3f
    mov dx, 0x3f8
    out dx, al
    jmp 2b
3:  xor eax, eax
    cpuid
    mov dx, 0x3f8
    mov al, bl                                # first letter of the vendor
    out dx, al
    mov al, 10
    out dx, al
    mov dx, 0xf4
    mov eax, 0x2a
    out dx, eax
    hlt
.code64
vmx_smoke_guest_end:
