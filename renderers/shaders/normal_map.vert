#version 330 core
// Normal maps: position as pyrender's flat.vert, plus the normal in the camera (view) frame.
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;

uniform mat4 M;
uniform mat4 V;
uniform mat4 P;

out vec3 view_normal;

void main()
{
    mat4 model_view = V * M * inst_m;
    gl_Position = P * model_view * vec4(position, 1.0);
#ifdef NORMAL_LOC
    view_normal = mat3(transpose(inverse(model_view))) * normal;
#else
    view_normal = vec3(0.0, 0.0, 1.0);
#endif
}
