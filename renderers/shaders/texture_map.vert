#version 330 core
// Texture maps: pyrender's mesh attributes, passed on for Lambert shading.
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
#ifdef TEXCOORD_0_LOC
layout(location = TEXCOORD_0_LOC) in vec2 texcoord_0;
#endif
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;

uniform mat4 M;
uniform mat4 V;
uniform mat4 P;

out vec3 world_normal;
out vec2 uv_0;
out vec4 color_multiplier;

void main()
{
    mat4 model = M * inst_m;
    gl_Position = P * V * model * vec4(position, 1.0);
#ifdef NORMAL_LOC
    world_normal = mat3(transpose(inverse(model))) * normal;
#else
    world_normal = vec3(0.0, 0.0, 1.0);
#endif
#ifdef TEXCOORD_0_LOC
    uv_0 = texcoord_0;
#else
    uv_0 = vec2(0.0);
#endif
#ifdef COLOR_0_LOC
    color_multiplier = color_0;
#else
    color_multiplier = vec4(1.0);
#endif
}
