# VM entry and the VM-exit landing point.
#
# vmx_run(registers: *mut GuestRegisters [rdi], launched: u64 [rsi]) -> u64
#   Saves the callee-saved registers and the registers pointer on the host
#   stack, points the VMCS host RSP there, loads the guest's registers and
#   executes VMLAUNCH or VMRESUME. If the instruction fails, execution falls
#   through and RFLAGS (CF or ZF set) is returned. Otherwise the CPU comes
#   back at vmx_exit_landing with RSP as written, and 0 is returned.
#
# The offsets follow GuestRegisters in lib.rs.

.set REG_RAX, 0x00
.set REG_RBX, 0x08
.set REG_RCX, 0x10
.set REG_RDX, 0x18
.set REG_RSI, 0x20
.set REG_RDI, 0x28
.set REG_RBP, 0x30
.set REG_R8,  0x38
.set REG_R9,  0x40
.set REG_R10, 0x48
.set REG_R11, 0x50
.set REG_R12, 0x58
.set REG_R13, 0x60
.set REG_R14, 0x68
.set REG_R15, 0x70
.set REG_CR2, 0x78
.set VMCS_HOST_RSP, 0x6c14

.section .text.vmx_run, "ax"
.code64
.global vmx_run
vmx_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, VMCS_HOST_RSP
    vmwrite rax, rsp

    mov rax, [rdi + REG_CR2]
    mov cr2, rax
    # Decide between launch and resume before the guest's registers take
    # over; MOVs leave the flags alone.
    test rsi, rsi
    mov rax, [rdi + REG_RAX]
    mov rbx, [rdi + REG_RBX]
    mov rcx, [rdi + REG_RCX]
    mov rdx, [rdi + REG_RDX]
    mov rsi, [rdi + REG_RSI]
    mov rbp, [rdi + REG_RBP]
    mov r8,  [rdi + REG_R8]
    mov r9,  [rdi + REG_R9]
    mov r10, [rdi + REG_R10]
    mov r11, [rdi + REG_R11]
    mov r12, [rdi + REG_R12]
    mov r13, [rdi + REG_R13]
    mov r14, [rdi + REG_R14]
    mov r15, [rdi + REG_R15]
    mov rdi, [rdi + REG_RDI]
    jnz 1f
    vmlaunch
    jmp 2f
1:  vmresume
2:  # The entry failed: still in the host, with the host's stack.
    pushfq
    pop rax
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

.global vmx_exit_landing
vmx_exit_landing:
    # RSP is the host RSP written above: [rsp] holds the registers pointer.
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + REG_RAX], rax
    mov [rdi + REG_RBX], rbx
    mov [rdi + REG_RCX], rcx
    mov [rdi + REG_RDX], rdx
    mov [rdi + REG_RSI], rsi
    mov [rdi + REG_RBP], rbp
    mov [rdi + REG_R8],  r8
    mov [rdi + REG_R9],  r9
    mov [rdi + REG_R10], r10
    mov [rdi + REG_R11], r11
    mov [rdi + REG_R12], r12
    mov [rdi + REG_R13], r13
    mov [rdi + REG_R14], r14
    mov [rdi + REG_R15], r15
    pop rax
    mov [rdi + REG_RDI], rax
    mov rax, cr2
    mov [rdi + REG_CR2], rax
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    xor eax, eax
    ret
